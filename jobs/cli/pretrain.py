"""mst-pretrain: pre-train MST in a folder; the same command on the same folder resumes it."""

from __future__ import annotations

import argparse
import json
import sys

from .common import StopOnSignal, add_config_args, check_out_folder, fail, os_error_line, setup_logging


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mst-pretrain",
        description="Pre-train MST (DINO teacher/student ViT with attention-guided masking and image restoration). "
                    "Running the same command on the same --out folder resumes it; a finished folder is not re-run.")
    add_config_args(p)
    p.add_argument("--out", required=True, help="stage folder (checkpoint.pt, metrics.jsonl, result.json)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    return p


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
    setup_logging()
    from pathlib import Path

    from mst.atomic import read_json

    done = read_json(Path(args.out) / "result.json")
    from mst.checkpoint import CheckpointError
    from mst.data import DataError
    from mst.stage_folder import StageFolderBusy, StageFolderError
    from mst.train import Interrupted, NonFiniteLoss, RunFolderMismatch, run_pretrain

    try:
        with StopOnSignal() as stop:
            record = run_pretrain(cfg, args.out, should_stop=stop, show_progress=not args.quiet)
    except (DataError, RunFolderMismatch, ConfigError, CheckpointError, StageFolderBusy, StageFolderError) as err:
        fail(str(err))
    except NonFiniteLoss as err:
        fail(f"run failed: {err} (see {args.out}/result.json)", code=1)
    except Interrupted as err:
        fail(f"stopped by signal: {err}", code=stop.exit_code)
    except KeyboardInterrupt:
        fail("stopped at once by a second Ctrl-C; rerun the same command to resume from the last checkpoint",
             code=130)
    except OSError as err:
        fail(os_error_line(err, args.out), code=1)
    if done and done.get("status") == "done":
        print(f"{args.out} is already done (weights_sha256 {record['weights_sha256'][:16]}); not re-run")
    summary = {k: record[k] for k in ("status", "weights_sha256", "wall_time_s")}
    print(json.dumps({**summary, **record["metrics"]}))
    sys.exit(0 if record["status"] == "done" else 1)


if __name__ == "__main__":
    main()
