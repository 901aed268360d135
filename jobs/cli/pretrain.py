"""mst-pretrain: pre-train MST in a folder; the same command on the same folder resumes it."""

from __future__ import annotations

import argparse

from mst.boundary import console_script

from .common import check_out_folder, fail, print_summary, run_stage_command


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mst-pretrain",
        description="Pre-train MST (DINO teacher/student ViT with attention-guided masking and image restoration). "
                    "Running the same command on the same --out folder resumes it; a finished folder is not re-run.")
    p.add_argument("--preset", default="smoke",
                   help="preset name (paper, smoke, tiny) or a YAML file (default: smoke)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, repeatable, e.g. --set optim.lr=1e-3")
    p.add_argument("--out", required=True, help="stage folder (checkpoint.pt, metrics.jsonl, result.json)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    return p


@console_script
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from mst.config import ConfigError

    from ..config_io import dump_config, load_config

    try:
        cfg = load_config(args.preset, args.sets)
    except ConfigError as err:
        fail(str(err))
    if args.print_config:
        print(dump_config(cfg), end="")
        return
    check_out_folder(args.out)
    from mst.run.record import is_done
    from mst.train import run_pretrain

    done = is_done(args.out)
    record = run_stage_command(
        lambda stop: run_pretrain(cfg, args.out, should_stop=stop, show_progress=not args.quiet), args.out, "run")
    if done is not None:
        print(f"{args.out} is already done (weights_sha256 {record['weights_sha256'][:16]}); not re-run")
    print_summary(record, ("status", "weights_sha256", "wall_time_s"))


if __name__ == "__main__":
    main()
