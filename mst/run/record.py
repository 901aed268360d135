"""The versioned result.json record every stage writes (docs/ARCHITECTURE.md), and the one writer of a
`failed` record, which the method and the job layer both call."""

from __future__ import annotations

import logging
import platform
import subprocess
import time
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_json
from ..config import Config, config_hash, config_to_dict

SCHEMA_VERSION = 1
ERROR_CHARS = 500  # a record's error is one line, capped: a huge message must not bloat every status read

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5, check=False)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


@lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for pkg in ("mst-toolkit", "torch", "torchvision", "timm", "submitit"):
        try:
            found[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return found


def make_record(stage: str, cfg_dict: dict, config_hash: str, status: str, metrics: dict[str, Any],
                wall_time_s: float | None, extra: dict[str, Any] | None = None, error: str | None = None,
                **fields: Any) -> dict[str, Any]:
    """A result record; `extra` (run id, sweep, cell, cluster, job ids, ...) comes from the job layer.
    `wall_time_s` None: not known (the job layer records a failure the method could not)."""
    record: dict[str, Any] = {
        "schema": SCHEMA_VERSION, "run_id": None, "sweep": None, "cell": {}, "repeat": 0,
        "seed": cfg_dict["train"]["seed"], "stage": stage, "status": status, "error": error,
        "metrics": metrics, "config_hash": config_hash, "config": cfg_dict,
        "git_sha": git_sha(), "versions": versions(), "cluster": "local", "job_ids": [], "nodes": platform.node(),
        "wall_time_s": None if wall_time_s is None else round(wall_time_s, 3), "device_hours": None,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    record.update(fields)
    record.update(extra or {})
    if record.get("device_hours") is None and record.get("devices") and record["wall_time_s"] is not None:
        # device-hours = wall time x devices the job held (a CPU task counts as one device)
        record["device_hours"] = round(record["wall_time_s"] * record["devices"] / 3600, 6)
    return record


def error_line(error: BaseException | str) -> str:
    """What a failed record says: the exception's type and the first line of its message, capped."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return (text.splitlines() or [""])[0][:ERROR_CHARS]


def write_failed_record(out: str | Path, stage: str, cfg: Config, error: BaseException | str,
                        metrics: dict[str, Any] | None = None, wall_time_s: float | None = 0.0,
                        extra: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """Write <out>/result.json saying `stage` failed and why, with the config, its hash, the git sha and the
    versions every record carries; returns the record.

    Best effort: on a full disk or a read-only folder the original error is what the user must see, so a
    failed write is logged, not raised.
    """
    record = make_record(stage, config_to_dict(cfg), config_hash(cfg), "failed", dict(metrics or {}),
                         wall_time_s, extra, error=error_line(error), **fields)
    try:
        atomic_write_json(Path(out) / "result.json", record)
    except OSError as err:
        log.warning("could not write the failed record in %s: %s", out, err)
    return record
