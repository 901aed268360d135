"""What the command lines share: one-line user errors, the --out folder, and running a stage (logging, signals,
its summary line)."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterable
from typing import NoReturn, TypeVar

from jobs.stop_flag import StopFlag

T = TypeVar("T")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one line saying what is wrong and how to fix it, then exit non-zero."""
    from mst.boundary import print_error

    print_error(message, code)


def setup_logging() -> None:
    """One logger set-up per entry point; ranks other than 0 only report warnings."""
    rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, stream=sys.stderr)
    formatter = _ShownFormatter(f"%(asctime)s [rank {rank}] %(name)s: %(message)s", datefmt="%H:%M:%S")
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)


class _ShownFormatter(logging.Formatter):
    """Log lines name paths and values a user chose: their control characters are shown escaped."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        from mst.echo import shown

        record.message = shown(record.message)
        return super().formatMessage(record)


def check_out_folder(out: str) -> None:
    """--out must name a folder (new or existing), never a file or the empty string."""
    from mst.run.folder import StageFolderError, check_stage_folder

    try:
        check_stage_folder(out)
    except StageFolderError as err:
        fail(f"--out {out!r}: {err}")


def os_error_line(err: OSError, out: str) -> str:
    """One line for a file-system failure (full disk, read-only folder, permissions) while writing `out`."""
    return (f"cannot write {err.filename or out}: {err.strerror or err}; free space or make the folder "
            "writable, then rerun")


def print_summary(record: dict, keys: Iterable[str]) -> NoReturn:
    """Print a stage's record as one JSON line (its `keys`, then its metrics) and exit: 0 when it is done."""
    print(json.dumps({**{k: record[k] for k in keys}, **record["metrics"]}))
    sys.exit(0 if record["status"] == "done" else 1)


def run_stage_command(run: Callable[[StopFlag], T], out: str, what: str) -> T:
    """Run a stage (`run(stop)`) with logging set up and Ctrl-C/SIGTERM saving at the next step, and turn what a
    user can cause (bad config or data, a foreign checkpoint, a busy folder, a full disk, a signal) into one
    line and an exit code instead of a traceback."""
    from mst.checkpoint import CheckpointError
    from mst.config import ConfigError
    from mst.data import DataError
    from mst.eval.stage import PretrainUnfinished
    from mst.run.folder import StageFolderBusy, StageFolderError
    from mst.train import Interrupted, NonFiniteLoss, RunFolderMismatch

    setup_logging()
    stop = StopFlag()
    try:
        with stop:
            return run(stop)
    except (DataError, RunFolderMismatch, ConfigError, CheckpointError, PretrainUnfinished, StageFolderBusy,
            StageFolderError) as err:
        fail(str(err))
    except NonFiniteLoss as err:
        fail(f"{what} failed: {err} (see {out}/result.json)", code=1)
    except Interrupted as err:
        fail(f"stopped by signal: {err}", code=stop.exit_code)
    except KeyboardInterrupt:
        fail("stopped at once by a second Ctrl-C; rerun the same command to resume from the last checkpoint",
             code=130)
    except OSError as err:
        fail(os_error_line(err, out) + " (the last checkpoint is kept)", code=1)
