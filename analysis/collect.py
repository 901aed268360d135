"""Collect `result.json` records under a runs root into one DataFrame (one row per run and stage).

Layout: `<runs_root>/<sweep>/<run_id>/<stage>/result.json` (docs/ARCHITECTURE.md). A record that is not
valid JSON or does not follow schema 1 is skipped and named, never fatal: a half-written or hand-edited
file must not hide every other result.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

SCHEMA = 1
STATUSES = ("done", "failed", "running", "preempted")
# key -> accepted types; every record must carry these (the rest of the schema is informational here)
REQUIRED = {
    "schema": (int,), "run_id": (str,), "sweep": (str,), "cell": (dict,), "repeat": (int,), "seed": (int,),
    "stage": (str,), "status": (str,), "metrics": (dict,),
}
COLUMNS = ["sweep", "run_id", "stage", "status", "repeat", "seed", "cell", "metrics", "error", "config_hash",
           "wall_time_s", "device_hours", "path"]


@dataclass(frozen=True)
class Skipped:
    """A record that could not be used."""

    path: str
    """The result.json file."""
    reason: str
    """Why it was skipped (one line)."""


@dataclass(frozen=True)
class Records:
    """Every usable record, and the ones skipped."""

    frame: pd.DataFrame
    """One row per (run, stage); columns COLUMNS, `metrics` and `cell` hold dicts."""
    skipped: tuple[Skipped, ...]
    """Corrupt or schema-mismatched records, each named."""


def check_record(data: object, path: Path) -> str | None:
    """Why `data` is not a usable schema-1 record for the file at `path`, or None when it is."""
    if not isinstance(data, dict):
        return f"not a JSON object ({type(data).__name__})"
    if data.get("schema") != SCHEMA:
        return f"schema {data.get('schema')!r}, expected {SCHEMA}"
    for key, types in REQUIRED.items():
        if key not in data:
            return f"missing key '{key}'"
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, types):
            return f"key '{key}' has type {type(value).__name__}, expected {types[0].__name__}"
    if data["status"] not in STATUSES:
        return f"unknown status '{data['status']}' (expected one of {', '.join(STATUSES)})"
    # the folder names the run; a record copied into the wrong folder would be counted twice
    stage_dir, run_dir, sweep_dir = path.parent, path.parent.parent, path.parent.parent.parent
    for key, folder in (("stage", stage_dir), ("run_id", run_dir), ("sweep", sweep_dir)):
        if data[key] != folder.name:
            return f"{key} '{data[key]}' does not match its folder '{folder.name}'"
    for name, value in data["metrics"].items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return f"metric '{name}' is not a number ({value!r})"
    return None


def _subdirs(path: Path) -> list[Path]:
    with os.scandir(path) as entries:
        return [Path(e.path) for e in entries if e.is_dir()]


def record_paths(runs_root: Path, sweeps: list[str] | None = None) -> list[Path]:
    """Every `<sweep>/<run_id>/<stage>/result.json` under the root (optionally only some sweeps)."""
    sweep_dirs = [runs_root / s for s in sweeps] if sweeps is not None else _subdirs(runs_root)
    paths = []
    for sweep_dir in sorted(d for d in sweep_dirs if d.is_dir()):
        for run_dir in sorted(_subdirs(sweep_dir)):
            for stage_dir in sorted(_subdirs(run_dir)):
                path = stage_dir / "result.json"
                if path.is_file():
                    paths.append(path)
    return paths


def collect(runs_root: Path, sweeps: list[str] | None = None) -> Records:
    """Read every record under `runs_root` (or only those of `sweeps`)."""
    rows, skipped = [], []
    for path in record_paths(Path(runs_root), sweeps):
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            skipped.append(Skipped(str(path), f"unreadable: {str(err).splitlines()[0]}"))
            continue
        reason = check_record(data, path)
        if reason:
            skipped.append(Skipped(str(path), reason))
            continue
        row = {key: data.get(key) for key in COLUMNS if key != "path"}
        row["path"] = str(path)
        rows.append(row)
    return Records(pd.DataFrame(rows, columns=COLUMNS), tuple(skipped))


def sweeps_in(runs_root: Path) -> list[str]:
    """Names of the sweep folders under the root that hold at least one run folder."""
    return sorted(d.name for d in _subdirs(Path(runs_root)) if any(True for _ in _subdirs(d)))
