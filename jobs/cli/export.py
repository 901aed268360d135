"""mst-export: write a pre-training's backbone alone for other programs (timm, DINO-format codebases), as
safetensors or a plain tensor state dict, with a JSON card beside it (FILE.card.json): architecture, patch and
image size, config hash, run id, the k-NN / linear results the run recorded, and the git sha.

Load the file in timm with
  timm.create_model(CARD.timm_model, num_classes=0, **CARD.timm_kwargs).load_state_dict(safetensors.torch.load_file(FILE))
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import fail, os_error_line
from .evaluate import CHECKPOINT_HELP, find_pretrain_dir

FORMATS = ("timm", "dino")  # mst.weights.NAMINGS, without importing torch for --help


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mst-export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, metavar="RUN_DIR", help=CHECKPOINT_HELP)
    p.add_argument("--format", required=True, choices=FORMATS,
                   help="key names: timm's VisionTransformer, or DINO's vision_transformer.py")
    p.add_argument("--which", choices=("teacher", "student"), default="teacher",
                   help="which backbone to export (default: teacher, as DINO releases)")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="FILE.safetensors, or FILE.pth / .pt / .bin for a plain torch state dict")
    p.add_argument("--overwrite", action="store_true", help="replace FILE and its card when they exist")
    p.add_argument("--allow-partial", action="store_true",
                   help="export a pre-training that has not finished; the card says partial: true")
    return p


def check_out(out: str, overwrite: bool) -> None:
    """--out: a known suffix, an existing folder to write in, nothing replaced unless --overwrite."""
    from mst.export import card_path
    from mst.weights import CONTAINERS

    path = Path(out)
    if path.suffix.lower() not in CONTAINERS:
        fail(f"--out {out}: unknown file type '{path.suffix or '(none)'}'; name it "
             f"{' or '.join(sorted(CONTAINERS))}")
    if path.is_dir():
        fail(f"--out {out} is a folder; give a file name such as {path / 'backbone.safetensors'}")
    if not path.parent.is_dir():
        fail(f"--out {out}: folder {path.parent} does not exist; create it first")
    for existing in (path, card_path(path)):
        if existing.exists() and not overwrite:
            fail(f"--out {out}: {existing} exists; pass --overwrite to replace it or choose another name")


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    pretrain_dir = find_pretrain_dir(args.checkpoint)
    check_out(args.out, args.overwrite)
    from mst.checkpoint import CheckpointError
    from mst.eval.stage import PretrainUnfinished
    from mst.export import card_path, export_backbone

    try:
        card = export_backbone(pretrain_dir, args.format, args.out, args.which, args.allow_partial)
    except (CheckpointError, PretrainUnfinished) as err:
        fail(str(err))
    except OSError as err:
        fail(os_error_line(err, args.out), code=1)
    summary = {k: card[k] for k in ("file_sha256", "naming", "container", "arch", "timm_model")}
    print(json.dumps({"out": args.out, "card": str(card_path(args.out)), **summary}))


if __name__ == "__main__":
    main()
