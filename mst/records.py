"""The versioned result.json record every stage writes (docs/ARCHITECTURE.md)."""

from __future__ import annotations

import platform
import subprocess
import time
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


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
                wall_time_s: float, extra: dict[str, Any] | None = None, error: str | None = None,
                **fields: Any) -> dict[str, Any]:
    """A result record; `extra` (run id, sweep, cell, cluster, job ids, ...) comes from the job layer."""
    record: dict[str, Any] = {
        "schema": SCHEMA_VERSION, "run_id": None, "sweep": None, "cell": {}, "repeat": 0,
        "seed": cfg_dict["train"]["seed"], "stage": stage, "status": status, "error": error,
        "metrics": metrics, "config_hash": config_hash, "config": cfg_dict,
        "git_sha": git_sha(), "versions": versions(), "cluster": "local", "job_ids": [], "nodes": platform.node(),
        "wall_time_s": round(wall_time_s, 3), "device_hours": None,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    record.update(fields)
    record.update(extra or {})
    if record.get("device_hours") is None and record.get("devices"):
        # device-hours = wall time x devices the job held (a CPU task counts as one device)
        record["device_hours"] = round(record["wall_time_s"] * record["devices"] / 3600, 6)
    return record
