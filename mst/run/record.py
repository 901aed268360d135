"""The versioned result.json record every stage writes (docs/ARCHITECTURE.md), and the one writer of a
`failed` record, which the method and the job layer both call."""

from __future__ import annotations

import dataclasses
import logging
import platform
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_json, read_json
from ..config import Config, config_hash, config_to_dict

SCHEMA_VERSION = 1
"""The version of the result.json format; readers refuse any other."""
STATUSES = ("done", "failed", "running", "preempted")
"""What a record's `status` may say."""
ERROR_CHARS = 500  # a record's error is one line, capped: a huge message must not bloat every status read


class _NotWritten:
    """The value of a record field the writer leaves out of the file."""

    def __repr__(self) -> str:
        return "NOT_WRITTEN"


NOT_WRITTEN: Any = _NotWritten()


def _read(*types: type) -> dict[str, Any]:
    """Field metadata: the types a reader requires of the field (a record without it is unusable)."""
    return {"read": types}


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """One stage's result.json (docs/ARCHITECTURE.md), its fields in the order they are written. A field left
    at NOT_WRITTEN is not in the file (a progress record has no git sha, versions or finish time yet)."""

    schema: int = field(default=SCHEMA_VERSION, metadata=_read(int))
    """The record format's version, SCHEMA_VERSION."""
    run_id: str | None = field(default=NOT_WRITTEN, metadata=_read(str))
    """The sweep's run id (config hash + '-r<repeat>'), the run folder's name; None outside a sweep."""
    sweep: str | None = field(default=NOT_WRITTEN, metadata=_read(str))
    """The sweep's name, the sweep folder's; None outside a sweep."""
    cell: dict[str, Any] = field(default=NOT_WRITTEN, metadata=_read(dict))
    """The swept values of the run's cell, {dotted key: value}."""
    repeat: int = field(default=NOT_WRITTEN, metadata=_read(int))
    """Which repeat of its cell the run is (0 first)."""
    seed: int = field(default=NOT_WRITTEN, metadata=_read(int))
    """The run's seed (train.seed)."""
    stage: str = field(default=NOT_WRITTEN, metadata=_read(str))
    """The stage of mst.stages that wrote it, the stage folder's name."""
    status: str = field(default=NOT_WRITTEN, metadata=_read(str))
    """One of STATUSES."""
    error: str | None = None
    """Why the stage failed: one line, at most ERROR_CHARS characters; None otherwise."""
    metrics: dict[str, Any] = field(default_factory=dict, metadata=_read(dict))
    """Metric name -> number (or None), as the stage registry names them; {} before the stage ends."""
    config_hash: str = NOT_WRITTEN
    """The hash of the resolved config the run id carries."""
    config: dict[str, Any] = NOT_WRITTEN
    """The config that ran, as a plain dict (mst.config.config_to_dict)."""
    git_sha: str | None = NOT_WRITTEN
    """The commit of the code that ran, None outside a git checkout."""
    versions: dict[str, str] = NOT_WRITTEN
    """Python's and the packages' versions (mst-toolkit, torch, torchvision, timm, submitit)."""
    cluster: str = NOT_WRITTEN
    """The cluster profile it ran on ('local' outside a sweep)."""
    job_ids: list[str] = NOT_WRITTEN
    """The Slurm job ids that worked on the stage, in order (a requeue adds one)."""
    nodes: str = NOT_WRITTEN
    """The host or Slurm node list it ran on."""
    wall_time_s: float | None = None
    """Seconds the stage computed (over every resume), 3 decimals; None when not known."""
    device_hours: float | None = None
    """wall_time_s x the devices the job held / 3600 (a CPU task counts as one device); None when not known."""
    finished_at: str = NOT_WRITTEN
    """UTC time the final record was written, ISO 8601 with Z."""
    updated_at: str = NOT_WRITTEN
    """UTC time a progress record (running, preempted) was written, ISO 8601 with Z."""
    more: Mapping[str, Any] = field(default_factory=dict)
    """The keys the job layer and the stage add (devices, weights_sha256, baselines, ...), written after the
    named fields, in this order."""


_NAMED = tuple(f.name for f in dataclasses.fields(RunRecord) if f.name != "more")
READ_TYPES = {f.name: f.metadata["read"] for f in dataclasses.fields(RunRecord) if "read" in f.metadata}
"""Field -> the types a reader requires of it."""


def record_of(items: Mapping[str, Any]) -> RunRecord:
    """The record holding `items`: named fields by name, every other key into `more`, in its order."""
    return RunRecord(**{k: v for k, v in items.items() if k in _NAMED},
                     more={k: v for k, v in items.items() if k not in _NAMED})


def encode_record(record: RunRecord) -> dict[str, Any]:
    """The record as result.json holds it: the named fields in order (NOT_WRITTEN ones left out), then `more`."""
    out = {name: getattr(record, name) for name in _NAMED if getattr(record, name) is not NOT_WRITTEN}
    return out | dict(record.more)


def is_done(out: str | Path) -> dict[str, Any] | None:
    """The stage folder's result.json when it says `done` (the stage is then never run again), else None: the
    one answer to "is this stage done" for the method, the job layer and the command lines."""
    record = read_json(Path(out) / "result.json")
    return record if record is not None and record.get("status") == "done" else None


def record_problem(data: object) -> str | None:
    """Why `data` (a parsed result.json) is not a usable record of SCHEMA_VERSION, or None when it is."""
    if not isinstance(data, dict):
        return f"not a JSON object ({type(data).__name__})"
    if data.get("schema") != SCHEMA_VERSION:
        return f"schema {data.get('schema')!r}, expected {SCHEMA_VERSION}"
    for key, types in READ_TYPES.items():
        if key not in data:
            return f"missing key '{key}'"
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, types):
            return f"key '{key}' has type {type(value).__name__}, expected {types[0].__name__}"
    if data["status"] not in STATUSES:
        return f"unknown status '{data['status']}' (expected one of {', '.join(STATUSES)})"
    return None


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
    items: dict[str, Any] = {
        "schema": SCHEMA_VERSION, "run_id": None, "sweep": None, "cell": {}, "repeat": 0,
        "seed": cfg_dict["train"]["seed"], "stage": stage, "status": status, "error": error,
        "metrics": metrics, "config_hash": config_hash, "config": cfg_dict,
        "git_sha": git_sha(), "versions": versions(), "cluster": "local", "job_ids": [], "nodes": platform.node(),
        "wall_time_s": None if wall_time_s is None else round(wall_time_s, 3), "device_hours": None,
        "finished_at": utc_now(),
    }
    items.update(fields)
    items.update(extra or {})
    if items.get("device_hours") is None and items.get("devices") and items["wall_time_s"] is not None:
        # device-hours = wall time x devices the job held (a CPU task counts as one device)
        items["device_hours"] = round(items["wall_time_s"] * items["devices"] / 3600, 6)
    return encode_record(record_of(items))


def utc_now() -> str:
    """The time a record is written: UTC, ISO 8601 with Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


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
