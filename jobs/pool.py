"""The pool of pre-trainings of a runs root: one pre-training per run id, whichever sweeps ask for it.

Layout (jobs.rundir): `<root>/pretrain/<run_id>/pretrain/` is the stage folder, `<root>/pretrain/manifest.jsonl`
every submission of a pooled pre-training, and each sweep's `<run_id>/pretrain` a relative link to it. A sweep
submitting a run whose pre-training is done reuses it, one queued or running gets the sweep's downstream stages
attached (`afterok` on that job), one failed or cancelled is submitted again, by one submission only: the
submission holds the lock of every pool entry it plans (`rundir.submit_locks`) from reading their states until their
jobs are in the pool's manifest; `cancel` leaves a pooled pre-training another sweep still waits on.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from jobs import rundir
from jobs.profiles import ClusterProfile
from jobs.runstate import FINAL, IN_FLIGHT
from jobs.states import stage_states


def waiting_sweeps(runs_root: str | Path, run_ids: list[str], but: str, profile: ClusterProfile
                   ) -> dict[str, list[str]]:
    """Run id -> the other sweeps under the root (not `but`) still waiting on its pooled pre-training: their
    `<run_id>/pretrain` links to the pool entry, and one of their downstream stages of that run is queued,
    running or preempted, or they submitted the pre-training alone (a sweep of pre-trainings only)."""
    root = Path(runs_root)
    waiting: dict[str, list[str]] = {}
    for run_id in run_ids:
        for name in _folders(root):
            other = rundir.SweepFolder(root, name)
            if name in (rundir.POOL, but) or not other.links_pretrain(run_id):
                continue
            keys = [k for k in rundir.latest_submissions(other) if k[0] == run_id]
            downstream = [k for k in keys if k[1] != "pretrain"]
            if (keys and not downstream) or (downstream and any(
                    s.state in IN_FLIGHT for s in stage_states(other, downstream, profile))):
                waiting.setdefault(run_id, []).append(name)
    return waiting


def adopt(runs_root: str | Path, out: Callable[[str], None] = print) -> int:
    """Move every pre-training folder a sweep holds as its own (a root made before the pool) into the pool,
    leaving the link in its place; returns how many moved.

    Nothing is lost: a folder whose run id is already pooled stays where it is (its sweep keeps using it), as
    does one whose record is not final (its job may still write into it: run this again once it ended). The
    sweep's manifest lines of the pre-training are copied into the pool's manifest, so status still finds its
    job; the move is one rename on the same file system.
    """
    root = Path(runs_root)
    entries = rundir.SweepFolder(root, rundir.POOL)
    moved = kept = 0
    for name in _folders(root):
        if name == rundir.POOL:
            continue
        sweep = rundir.SweepFolder(root, name)
        for run in _folders(sweep.path):
            if not sweep.owns_pretrain(run):
                continue
            folder = sweep.stage(run, "pretrain")
            target = entries.stage(run, "pretrain")
            with rundir.submit_locks(root, [target.parent]):
                if rundir.result_status(folder) not in FINAL or (target.is_dir() and any(target.iterdir())):
                    kept += 1
                    continue
                _move(sweep, run, folder, target)
            moved += 1
    out(f"{root}: moved {moved} pre-trainings into the pool ({root / rundir.POOL}), left {kept} where they are "
        "(already pooled under that run id, or not finished)")
    return moved


def _folders(path: Path) -> list[str]:
    """The path-safe (so never hidden) sub-folders of `path`, sorted."""
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and rundir.SAFE_NAME.fullmatch(e.name))


def _move(sweep: rundir.SweepFolder, run_id: str, folder: Path, target: Path) -> None:
    records = [r for r in rundir.read_manifest(sweep) if r["run_id"] == run_id and r["stage"] == "pretrain"]
    pool = rundir.SweepFolder(sweep.root, rundir.POOL)
    config = sweep.run(run_id) / "config.yaml"
    if config.is_file():
        rundir.write_config(sweep.root, pool.run(run_id) / "config.yaml", config.read_text())
    if target.is_dir():
        target.rmdir()  # an empty entry (a link made, nothing run)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(folder, target)
    rundir.link_pretrain(sweep, run_id)
    if records:
        rundir.append_jsonl(pool.manifest, [{**r, "sweep": sweep.name} for r in records])
