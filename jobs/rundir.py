"""Run folders, keyed by run id (never by Slurm job id), and their atomic files.

    <runs_root>/<sweep>/manifest.jsonl          one line per submitted (run, stage): job id, cluster, time
    <runs_root>/<sweep>/.submitit/<cluster>-<time>/<job id>/   submitit's scripts, pickles and logs
    <runs_root>/<sweep>/<run_id>/config.yaml    the resolved config (profile overrides included)
    <runs_root>/<sweep>/<run_id>/<stage>/       checkpoint.pt, metrics.jsonl, result.json, slurm/ (log links)

Only the standard library and PyYAML here: `mst-sweep status` reads these without importing torch.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

from mst.atomic import atomic_write_text

FINAL_STATES = ("done", "failed")


def sweep_dir(runs_root: str | Path, sweep: str) -> Path:
    return Path(runs_root) / sweep


def submitit_dir(runs_root: str | Path, sweep: str) -> Path:
    """Where submitit keeps scripts, pickles and logs; a dot folder, so it is never taken for a run."""
    return sweep_dir(runs_root, sweep) / ".submitit"


def run_dir(runs_root: str | Path, sweep: str, run_id: str) -> Path:
    return sweep_dir(runs_root, sweep) / run_id


def stage_dir(runs_root: str | Path, sweep: str, run_id: str, stage: str) -> Path:
    return run_dir(runs_root, sweep, run_id) / stage


def write_config(path: Path, config_yaml: str) -> None:
    """config.yaml of a run; rewritten only when its content changed (resubmissions leave it alone)."""
    path = Path(path)
    if path.is_file() and path.read_text() == config_yaml:
        return
    atomic_write_text(path, config_yaml)


def append_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    """Append whole lines under an exclusive lock, one write, fsync: concurrent writers never interleave."""
    if not records:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file; a torn last line (a writer killed mid-write) is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def manifest_path(runs_root: str | Path, sweep: str) -> Path:
    return sweep_dir(runs_root, sweep) / "manifest.jsonl"


def append_manifest(runs_root: str | Path, sweep: str, records: list[dict[str, Any]]) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    append_jsonl(manifest_path(runs_root, sweep), [{"time": stamp, **r} for r in records])


def latest_submissions(runs_root: str | Path, sweep: str) -> dict[tuple[str, str], dict[str, Any]]:
    """The last manifest record of every (run_id, stage)."""
    return {(r["run_id"], r["stage"]): r for r in read_jsonl(manifest_path(runs_root, sweep))}


def read_result(path: Path) -> dict[str, Any] | None:
    """A stage folder's result.json (or None when absent or unreadable)."""
    path = Path(path) / "result.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def result_status(path: Path) -> str | None:
    """'done' | 'failed' | 'running' | 'preempted' from a stage folder's result.json, None without one."""
    result = read_result(path)
    return None if result is None else result.get("status")
