"""Cluster `local`: every stage of every run of a sweep in this process, one after another, with progress bars.

A different lifecycle from a Slurm submission: nothing is queued, the command lasts as long as the sweep, and
the manifest names each stage's job `local-<pid>` (jobs.runstate.LOCAL_JOB).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from jobs import rundir
from jobs.errors import LaunchError
from jobs.plan import Run, describe, share_line
from jobs.profiles import ClusterProfile
from jobs.runstate import LOCAL_JOB
from jobs.states import stage_states
from mst.stages import NEEDS_PRETRAIN


class LocalFailures(LaunchError):
    """Some stages of a local sweep failed; the others ran. The message is the one-line summary."""


def run_local(sweep: Any, profile: ClusterProfile, runs: list[Run], folder: rundir.SweepFolder, pooled: set[str],
              own: int, dry_run: bool = False, out: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run every stage of every run here (on --dry-run, say what would run); returns the manifest records
    written. `pooled`: the run ids whose pre-training is the pool's, `own`: how many the sweep holds in its
    own folders.

    Done stages are skipped; an interrupted stage (Ctrl-C) saves at its step boundary and the same command
    resumes it. A failing stage is recorded (its result.json says failed, and why), the run's later stages
    that need it are skipped, and every other run still runs; the sweep then ends with a one-line summary
    (LocalFailures) and a non-zero exit. Runs with a failed stage record go last: a known-bad cell never
    delays the rest.
    """
    if pooled or own:
        pre = stage_states(folder, [(run_id, "pretrain") for run_id in sorted(pooled)], profile, pooled,
                           ask_scheduler=False)
        out(f"{sweep.name}: " + share_line(sorted(pooled), {s.run_id: s.state for s in pre}, own=own))
    if dry_run:
        for run in runs:
            out(f"would run {', '.join(sweep.stages)} of {run.run_id} ({describe(run)}) in this process")
        return []
    from rich.console import Console

    from jobs.stage_job import stage_job
    from mst.train import Interrupted

    console = Console(stderr=True)
    records = []
    done = skipped = 0
    failures: list[str] = []
    broken: set[str] = set()  # runs whose pre-training failed in this pass
    with rundir.submit_locks(folder.root, [folder.path], sweep=sweep.name):
        rundir.write_run_configs(runs, folder, profile.name)
        # ordered once the links into the pool exist: a pooled pre-training's failed record counts too
        tasks = [(run, stage) for run in rundir.failed_last(folder, runs, sweep.stages) for stage in sweep.stages]
        for i, (run, stage) in enumerate(tasks, 1):
            head = f"[{i}/{len(tasks)}] {stage} {run.run_id}"
            # asked here, not planned ahead: another local sweep sharing a pooled pre-training may have
            # finished it
            stage_dir = folder.stage(run.run_id, stage)
            if rundir.result_status(stage_dir) == "done":
                out(f"{head} ({describe(run)}): done already")
                done += 1
                continue
            if stage in NEEDS_PRETRAIN and run.run_id in broken:
                out(f"{head}: skipped (its pretrain failed)")
                skipped += 1
                continue
            console.rule(f"{head} ({describe(run)})")
            entry = rundir.ManifestEntry.of(run, stage, f"{LOCAL_JOB}-{os.getpid()}", profile.name, None)
            record = entry.encode()
            rundir.append_manifest(folder, [record])
            records.append(record)
            job = stage_job(run, stage, profile, folder.root)
            job.show_progress = True
            try:
                result = job()
            except Interrupted:
                raise
            except Exception as err:  # noqa: BLE001 - any failure of one stage is recorded, the sweep goes on
                result = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
            if result.get("status") != "done":
                why = str(result.get("error") or "no error message").splitlines()[0][:200]
                out(f"{head} ({describe(run)}): failed: {why}")
                failures.append(f"{stage} {run.run_id}: {why}")
                if stage == "pretrain":
                    broken.add(run.run_id)
                continue
            done += 1
            metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                for k, v in (result.get("metrics") or {}).items())
            out(f"{head}: {result.get('status')} {metrics}")
    summary = f"sweep {sweep.name}: {done} of {len(tasks)} stages done, {len(failures)} failed, {skipped} skipped"
    if failures:
        raise LocalFailures(f"{summary} (first: {failures[0]}); each failed stage's result.json says why; fix "
                            "it and run the same command again (done stages are kept)")
    out(summary)
    return records
