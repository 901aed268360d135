"""mst-eval: evaluate a pre-trained checkpoint (k-NN, linear probe, attention maps) or train the supervised
baseline. Each command writes result.json in --out; the same command on the same folder resumes it and a
finished folder is not re-run."""

from __future__ import annotations

import argparse
from pathlib import Path

from mst.boundary import console_script
from mst.stages import eval_commands

from .common import check_out_folder, fail, print_summary, run_stage_command

STAGES_OF = eval_commands()
"""Sub-command -> the stages it runs (mst.stages); `linear` runs linear_cls or linear_dino by --probe."""
PROBES = tuple(dict(spec.kwargs)["probe"] for spec in STAGES_OF["linear"])
NAMINGS = ("auto", "timm", "dino")  # mst.weights: auto, then its NAMINGS, without importing torch for --help
CHECKPOINT_HELP = "pre-training stage folder (holding checkpoint.pt) or the run folder above it"
"""--checkpoint of mst-eval and mst-export: what `find_pretrain_dir` accepts."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mst-eval", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="{" + ",".join(STAGES_OF) + "}")

    for name, specs in STAGES_OF.items():
        # a command that runs several stages (linear) is not worded by one stage's registry description
        text = ("linear probe on the frozen backbone (best and last epoch)" if name == "linear"
                else specs[0].description)
        if not specs[0].needs_pretrain:
            text += "; --checkpoint only supplies the config"
        # a command whose stages read pre-trained weights needs them; the others may take a config from them
        checkpoint_required = any(spec.needs_pretrain for spec in specs)
        c = sub.add_parser(name, help=text, description=text)
        source = c.add_mutually_exclusive_group(required=checkpoint_required)
        source.add_argument("--checkpoint", metavar="RUN_DIR", help=CHECKPOINT_HELP)
        if checkpoint_required:
            source.add_argument("--weights", metavar="FILE",
                                help="a backbone file to evaluate instead: .safetensors or a torch state dict "
                                     "(.pth/.pt/.bin) in timm or DINO naming; needs --arch, takes data and "
                                     "protocol from --preset (default smoke); nothing in it is unpickled")
            c.add_argument("--arch", metavar="NAME",
                           help="with --weights: the backbone it holds (vit_test, vit_smoke, deit_small, vit_base)")
            c.add_argument("--naming", choices=NAMINGS, default="auto",
                           help="with --weights: its key names (default: detected)")
        c.add_argument("--out", required=True, help="stage folder (checkpoint.pt, metrics.jsonl, result.json)")
        c.add_argument("--preset", default=None,
                       help="preset name (paper, smoke, tiny) or YAML file; default: the config stored with "
                            "the checkpoint")
        c.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                       help="dotted override on top of the config, repeatable, e.g. --set eval.knn_ks=[10,20]")
        c.add_argument("--quiet", action="store_true", help="no progress bar")
        if checkpoint_required:
            c.add_argument("--allow-partial", action="store_true",
                           help="evaluate a pre-training that has not finished (interrupted or failed); the "
                                "record is labelled partial: true")
        if name == "linear":
            c.add_argument("--probe", choices=PROBES, default=PROBES[0],
                           help="cls: last block's class token; dino: last 4 blocks' class tokens concatenated")
            c.add_argument("--cached-features", action="store_true",
                           help="extract centre-crop features once and train on them (faster, no augmentation)")
        if name == "attention":
            c.add_argument("--images", nargs="+", metavar="IMAGE",
                           help="scikit-image sample names (astronaut, chelsea, coffee, rocket, ...) or image "
                                "files; default: eval.attention_images")
            c.add_argument("--video", metavar="DIR", help="folder of video frames: also write attention.gif")
            c.add_argument("--supervised", metavar="DIR",
                           help="supervised stage folder to show beside MST (default: a finished supervised/ "
                                "beside --out or beside the checkpoint's folder)")
            c.add_argument("--size", type=int, help="side of the square input in pixels (default: augment.eval_crop)")
    return p


def find_pretrain_dir(given: str) -> Path:
    """The folder holding checkpoint.pt: RUN_DIR itself or RUN_DIR/pretrain."""
    path = Path(given)
    if not path.is_dir():
        fail(f"--checkpoint {given}: folder does not exist; give a pre-training folder holding checkpoint.pt")
    for candidate in (path, path / "pretrain"):
        if (candidate / "checkpoint.pt").is_file():
            return candidate
    fail(f"--checkpoint {given}: missing {path / 'checkpoint.pt'} (and {path / 'pretrain' / 'checkpoint.pt'}); "
         "point it at a finished pre-training folder")


def stored_config(pretrain_dir: Path) -> dict:
    """The config the checkpoint was trained with: its result.json, the run's config.yaml, or checkpoint.pt."""
    from mst.atomic import read_json

    record = read_json(pretrain_dir / "result.json")  # None when it is missing or not a usable JSON file
    if record is not None and isinstance(record.get("config"), dict):
        return record["config"]
    for yaml_path in (pretrain_dir / "config.yaml", pretrain_dir.parent / "config.yaml"):
        if yaml_path.is_file():
            from ..config_io import read_yaml

            return read_yaml(yaml_path, "run config")
    from mst.checkpoint import CheckpointError, load_checkpoint

    try:
        return load_checkpoint(pretrain_dir / "checkpoint.pt", expect=("config",))["config"]
    except CheckpointError as err:
        fail(str(err))


def resolve_config(args, pretrain_dir: Path | None):
    """--preset (+ --set) when given, else the checkpoint's own config (+ --set)."""
    from mst.config import apply_overrides, config_from_dict

    from ..config_io import load_config, parse_set

    if args.preset is not None or pretrain_dir is None:
        return load_config(args.preset or "smoke", args.sets)
    cfg = config_from_dict(stored_config(pretrain_dir))
    return apply_overrides(cfg, dict(parse_set(s) for s in args.sets))


def weights_config(args, cfg, source):
    """(cfg, source) as given without --weights; with it, (cfg for the file's backbone, mst.weights.WeightsFile),
    after reading the file once: a hostile, damaged or mismatched file is one line here, before anything is
    written. `--weights FILE --arch NAME` evaluates a backbone file (an export, or DINO's, iBOT's, timm's
    published weights) with the protocol of a preset, in place of a pre-training folder."""
    if not getattr(args, "weights", None):
        if getattr(args, "arch", None) or getattr(args, "naming", "auto") != "auto":
            fail("--arch and --naming describe a --weights file; drop them, or give --weights FILE instead of "
                 "--checkpoint")
        return cfg, source
    from mst.config import apply_overrides
    from mst.weights import WeightsError, WeightsFile

    if not args.arch:
        fail(f"--weights {args.weights} needs --arch NAME, the backbone it holds; e.g. --arch deit_small for "
             "a ViT-S/16")
    source = WeightsFile(Path(args.weights), args.arch, args.naming)
    try:
        backbone, _ = source.load()
    except WeightsError as err:
        fail(str(err))
    # the record's config names the backbone evaluated; its patch size is the file's
    return apply_overrides(cfg, {"model.arch": args.arch, "model.patch_size": backbone.patch_size}), source


def check_attention_inputs(args, cfg) -> None:
    """Images, frames and size are checked before anything is written."""
    from mst.eval.attention import ImageError, frame_paths, load_image

    try:
        for name in args.images or cfg.eval.attention_images:
            load_image(name)
        if args.video:
            frame_paths(args.video)
    except ImageError as err:
        fail(str(err))
    size = args.size or cfg.augment.eval_crop
    if size <= 0 or size % cfg.model.patch_size:
        fail(f"--size {size} is not a positive multiple of the patch size {cfg.model.patch_size}; "
             f"e.g. --size {4 * cfg.model.patch_size}")
    if args.supervised and not (Path(args.supervised) / "checkpoint.pt").is_file():
        fail(f"--supervised {args.supervised}: missing {Path(args.supervised) / 'checkpoint.pt'}; "
             "give a folder written by `mst-eval supervised`")


def run_command(args, cfg, source, stop) -> dict:
    """Run the stage the command line names (for `linear`, the one of its --probe), passing the entry point
    the keyword arguments its own options give."""
    specs = STAGES_OF[args.command]
    spec = specs[0] if len(specs) == 1 else next(s for s in specs if dict(s.kwargs)["probe"] == args.probe)
    kwargs = {"should_stop": stop, "show_progress": not args.quiet}
    if args.command == "linear":
        kwargs["cached_features"] = True if args.cached_features else None
    elif args.command == "attention":
        kwargs.update(images=args.images, supervised_dir=args.supervised, video=args.video, size=args.size)
    if spec.needs_pretrain:
        kwargs["allow_partial"] = getattr(args, "allow_partial", False)
    return spec.call(cfg, args.out, source, **kwargs)



@console_script
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    check_out_folder(args.out)
    from mst.config import ConfigError
    from mst.run.record import is_done

    done_before = is_done(args.out) is not None
    pretrain_dir = find_pretrain_dir(args.checkpoint) if args.checkpoint else None
    source = pretrain_dir  # the weights the stage reads: a pre-training folder, or a file (--weights)
    try:
        cfg, source = weights_config(args, resolve_config(args, pretrain_dir), source)
    except ConfigError as err:
        fail(str(err))
    if args.command == "attention":
        check_attention_inputs(args, cfg)
    record = run_stage_command(lambda stop: run_command(args, cfg, source, stop), args.out, args.command)
    if done_before:
        print(f"{args.out} is already done; not re-run")
    # not every stage records every key (mode: the linear probes and baselines)
    print_summary(record, [k for k in ("stage", "status", "mode", "weights_sha256", "wall_time_s")
                           if record.get(k) is not None])


if __name__ == "__main__":
    main()
