"""Collect `result.json` records under a runs root into one DataFrame (one row per run and stage).

Layout: `<runs_root>/<sweep>/<run_id>/<stage>/result.json` (docs/ARCHITECTURE.md); a pre-training in the
root's pool is read through each sweep's link to it and counted under every sweep that links it. A record
that is not valid JSON or does not follow the record schema (mst.run.record) is skipped and named, never fatal: a half-written or
hand-edited file must not hide every other result. Checked records are cached per sweep in
`.report-cache.json` (without their config), keyed by the file's inode, mtime and size, so a report over
10,000 records parses only what changed since the last one.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from jobs.rundir import POOL
from mst.inputs import InputError, NotJSON, read_json_file
from mst.run.record import SCHEMA_VERSION, record_problem

COLUMNS = ["sweep", "run_id", "stage", "status", "repeat", "seed", "cell", "metrics", "error", "config_hash",
           "wall_time_s", "device_hours", "baselines", "path"]


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
    """One row per (run, stage); columns COLUMNS, `metrics` and `cell` hold dicts, `baselines` a dict
    {"random init": {metric: value}, "raw pixels": {...}} where the stage recorded them, else None."""
    skipped: tuple[Skipped, ...]
    """Corrupt or schema-mismatched records, each named."""


def check_record(data: object, sweep: str, run_id: str, stage: str) -> str | None:
    """Why `data` is not a usable record for folder `<sweep>/<run_id>/<stage>/`, or None if it is."""
    problem = record_problem(data)  # the schema's own check: version, required keys and types, status
    if problem is not None or not isinstance(data, dict):
        return problem
    if data.get("partial") is True:  # mst-eval --allow-partial: an unfinished pre-training, never a table cell
        return (f"evaluates an unfinished pre-training ({data.get('pretrain_status', 'unfinished')}); "
                "partial records are not counted")
    # the folder names the run; a record copied into the wrong folder would be counted twice
    for key, folder in (("stage", stage), ("run_id", run_id), ("sweep", sweep)):
        if data[key] != folder:
            return f"{key} '{data[key]}' does not match its folder '{folder}'"
    for name, value in data["metrics"].items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return f"metric '{name}' is not a number ({value!r})"
    return check_baselines(data.get("baselines"))


def check_baselines(value: object) -> str | None:
    """Why a record's optional `baselines` field ({label: {metric: number}}, eval.baselines) is unusable."""
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(m, dict) for m in value.values()):
        return "key 'baselines' must map each baseline to its metrics"
    for label, metrics in value.items():
        for name, number in metrics.items():
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                return f"baseline '{label}' metric '{name}' is not a number ({number!r})"
    return None


def _subdirs(path: str) -> list[os.DirEntry]:
    # scandir + DirEntry.is_dir use the directory listing's file types: no stat per entry (10,000s of runs)
    try:
        with os.scandir(path) as entries:
            return sorted((e for e in entries if e.is_dir() and not e.name.startswith(".")), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []


MAX_RECORD_BYTES = 16 << 20  # a record is a few kilobytes (its config included)
CACHE_NAME = ".report-cache.json"
CACHE_VERSION = 2  # 2: rows carry `baselines`


def _load_cache(sweep_dir: str) -> dict[str, list]:
    """{'<run_id>/<stage>': [inode, mtime_ns, size, row]} of records already checked; {} when absent or
    unusable (not a regular file, too large or deep, another version, not a mapping): the cache is then
    rebuilt. Each entry's shape is checked where it is used (_cached_row)."""
    try:
        data = read_json_file(os.path.join(sweep_dir, CACHE_NAME), "report cache")
    except (OSError, ValueError):  # InputError is a ValueError
        return {}
    if (isinstance(data, dict) and data.get("version") == CACHE_VERSION and data.get("schema") == SCHEMA_VERSION
            and isinstance(data.get("entries"), dict)):
        return data["entries"]
    return {}


_ROW_KEYS = frozenset(COLUMNS) - {"path"}


def _cached_row(hit: object, stamp: list[int], sweep: str, run_id: str, stage: str) -> dict | None:
    """The cached row when `hit` is a well-formed entry for this file's stamp and its row a usable record
    (a hand-edited or foreign cache must not put a wrong-shaped row into the table); None to re-read."""
    if not isinstance(hit, list) or len(hit) != 4 or hit[:3] != stamp:
        return None
    row = hit[3]
    if not isinstance(row, dict) or set(row) != _ROW_KEYS:
        return None
    return row if check_record({**row, "schema": SCHEMA_VERSION}, sweep, run_id, stage) is None else None


def _save_cache(sweep_dir: str, entries: dict[str, list]) -> None:
    from mst.atomic import atomic_write_text

    try:
        atomic_write_text(Path(sweep_dir) / CACHE_NAME,
                          json.dumps({"version": CACHE_VERSION, "schema": SCHEMA_VERSION, "entries": entries}))
    except OSError:
        pass  # a read-only runs folder: the report still works, only slower next time


def _read_sweep(root: str, sweep: str, rows: list[dict], skipped: list[Skipped]) -> None:
    """Append the rows of one sweep folder. Records unchanged since the last report (same inode, mtime and
    size: writers replace the file atomically) come from the cache, so only new records are parsed."""
    sweep_dir = os.path.join(root, sweep)
    top = os.path.realpath(root)
    if _outside(sweep_dir, top):
        skipped.append(Skipped(sweep_dir, f"links out of the runs root (to {os.path.realpath(sweep_dir)}); "
                                          "its records are not read: remove the link"))
        return
    cache = _load_cache(sweep_dir)
    fresh: dict[str, list] = {}
    changed = False
    for run in _subdirs(sweep_dir):
        for stage in _subdirs(run.path):
            path = os.path.join(stage.path, "result.json")
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue  # a stage folder before its first record (checkpoint only, or just created)
            # a link is followed only while it stays under the root (DirEntry knows links without a stat)
            if (run.is_symlink() or stage.is_symlink() or stat.S_ISLNK(st.st_mode)) and _outside(path, top):
                skipped.append(Skipped(path, f"links out of the runs root (to {os.path.realpath(path)}); "
                                             "not read: remove the link"))
                continue
            if stat.S_ISLNK(st.st_mode):
                st = os.stat(path)  # the stamp of what the link names
            key, stamp = f"{run.name}/{stage.name}", [st.st_ino, st.st_mtime_ns, st.st_size]
            row = _cached_row(cache.get(key), stamp, sweep, run.name, stage.name)
            if row is None:
                changed = True
                try:
                    data = read_json_file(path, "record", MAX_RECORD_BYTES)
                except NotJSON as err:  # torn or foreign
                    skipped.append(Skipped(path, f"unreadable: {err.reason}"))
                    continue
                except InputError as err:  # not a regular file, too large or deep, a huge integer
                    skipped.append(Skipped(path, err.reason))
                    continue
                except OSError as err:
                    skipped.append(Skipped(path, f"unreadable: {err.strerror or err}"))
                    continue
                # a pooled pre-training names the sweep that submitted it; it counts for every sweep linking it
                pooled = stage.name == "pretrain" and stage.is_symlink() and _in_pool(root, stage.path)
                owner = data.get("sweep") if pooled and isinstance(data, dict) else sweep
                reason = check_record(data, owner if isinstance(owner, str) else sweep, run.name, stage.name)
                if reason:
                    skipped.append(Skipped(path, reason))
                    continue
                row = {k: data.get(k) for k in COLUMNS if k != "path"}
                row["sweep"] = sweep
            fresh[key] = stamp + [row]
            rows.append({**row, "path": path})
    if changed or len(fresh) != len(cache):  # new, replaced or removed records
        _save_cache(sweep_dir, fresh)


def _in_pool(root: str, path: str) -> bool:
    """A link that leads into the runs root's pool of pre-trainings (jobs.rundir), not elsewhere."""
    return not _outside(path, os.path.realpath(os.path.join(root, POOL)))


def _outside(path: str, top: str) -> bool:
    """Whether `path` resolves (links followed) outside the folder `top` (already resolved)."""
    return not os.path.realpath(path).startswith(top.rstrip(os.sep) + os.sep)


def collect(runs_root: Path, sweeps: list[str] | None = None) -> Records:
    """Read every `<sweep>/<run_id>/<stage>/result.json` under `runs_root` (or only those of `sweeps`)."""
    root = str(runs_root)
    names = sorted(sweeps) if sweeps is not None else [e.name for e in _subdirs(root) if e.name != POOL]
    rows: list[dict] = []
    skipped: list[Skipped] = []
    for sweep in names:
        if os.path.isdir(os.path.join(root, sweep)):
            _read_sweep(root, sweep, rows, skipped)
    return Records(pd.DataFrame(rows, columns=COLUMNS), tuple(skipped))


def sweeps_in(runs_root: Path) -> list[str]:
    """Names of the sweep folders under the root that hold at least one run folder."""
    return [d.name for d in _subdirs(str(runs_root)) if d.name != POOL and _subdirs(d.path)]
