"""Submit a sweep to a cluster profile, and later ask for its status, resubmit or cancel it.

Submission returns at once, as one pipeline read top to bottom: the sweep's runs on this cluster
(jobs.plan.resolve_runs), their folder (jobs.rundir), where each (run, stage) stands (jobs.states), what to
submit as job arrays (jobs.plan: split at the profile's array size limit, throttled by its parallelism,
downstream arrays aligned with their pre-training), the sbatch scripts (jobs.scheduler, every scheduler call
goes there), and the sweep's manifest, appended array by array. Cluster `local` runs the stages here instead
(jobs.local_run). Pre-trainings live in the runs root's pool (jobs.pool): one a sweep needs that is done is
reused, one queued or running gets the sweep's downstream stages attached, and `cancel` leaves one another
sweep waits on.

Scheduler load: `status` reads run-folder markers (result.json) first and asks the scheduler only about the
rest, with one sacct (or squeue) call per sweep, cached for a minute in the sweep folder. The states are the
words of jobs.runstate, which `mst-report status` prints too.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobs import pool, rundir
from jobs.errors import LaunchError
from jobs.local_run import run_local
from jobs.plan import Run, arrays_to_submit, describe, resolve_runs
from jobs.profiles import ClusterProfile, load_profile
from jobs.runstate import IN_FLIGHT
from jobs.scheduler import check_cluster, dependency_of, render_sbatch, scancel, slurm_conf_of, submit_array
from jobs.shellsafe import check_shell_path
from jobs.states import StageState, clear_cache, stage_states

__all__ = ["LaunchError", "cancel", "check_cluster", "load_for_cluster", "manifest_cluster", "status", "submit"]


def load_for_cluster(sweep_name: str, cluster: str) -> tuple[Any, ClusterProfile, list[Run]]:
    """The sweep, the cluster's profile, and the sweep's runs as that cluster will run them."""
    from jobs.sweep import load_sweep

    profile = load_profile(cluster)
    sweep = load_sweep(sweep_name)
    return sweep, profile, resolve_runs(sweep, profile)


def submit(sweep_name: str, cluster: str, runs_root: str | None = None, dry_run: bool = False,
           resubmit: bool = False, out: Callable[[str], None] = print, planned: dict[str, str] | None = None
           ) -> list[dict[str, Any]]:
    """Submit what is not done nor in flight; returns the manifest records written (none on --dry-run).

    One submission of a sweep at a time (rundir.submit_locks): a second one fails in one line instead of
    submitting the same runs twice. A dry run writes nothing, so it takes no lock. Pre-trainings go to the
    runs root's pool (jobs.pool). `planned` (dry runs of several sweeps in sequence): run id -> a label of the
    pre-trainings earlier sweeps would submit; this sweep shares them, and adds its own new ones.
    """
    sweep, profile, runs = load_for_cluster(sweep_name, cluster)
    if sweep.name == rundir.POOL:
        raise LaunchError(f"a sweep may not be named '{rundir.POOL}': that folder of a runs root holds the pooled "
                          "pre-trainings; rename the sweep file")
    root = Path(runs_root or profile.storage.run_root)
    folder = rundir.SweepFolder(root, sweep.name)
    pooled = folder.pooled(run.run_id for run in runs if "pretrain" in run.spec.stages)
    own = sum("pretrain" in run.spec.stages for run in runs) - len(pooled)  # a root made before the pool
    if profile.scheduler == "local":
        return run_local(sweep, profile, runs, folder, pooled, own, dry_run, out)
    # the runs root reaches #SBATCH lines and srun's command line: refuse what cannot travel there safely
    try:
        check_shell_path(str(root.resolve()))
    except ValueError as err:
        raise LaunchError(f"runs root {str(root)!r} {err}; Slurm scripts on cluster '{profile.name}' cannot "
                          "carry it safely: use --runs with a plain path (letters, digits and ./_-+@,:=~)") from None
    if resubmit or not dry_run:  # a resubmission's dry run asks the scheduler why each stage is resubmitted
        check_cluster(profile)
    with contextlib.ExitStack() as locks:
        if not dry_run:
            locks.enter_context(rundir.submit_locks(root, [folder.path], sweep=sweep.name))
            # the pool entries' locks: held from reading their states until their jobs are in the pool's manifest
            entries = rundir.SweepFolder(root, rundir.POOL)
            locks.enter_context(rundir.submit_locks(root, [entries.run(run_id) for run_id in pooled]))
        keys = [(run.run_id, stage) for run in runs for stage in sweep.stages]
        states = stage_states(folder, keys, profile, pooled, force=True, ask_scheduler=resubmit or not dry_run)
        arrays = arrays_to_submit(sweep, runs, states, profile, pooled, own, planned, dry_run and resubmit, out)
        if not arrays:
            out(f"{sweep.name}: nothing to {'resubmit' if resubmit else 'submit'} on {profile.name}")
            return []
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
        logs = folder.submitit.resolve() / f"{profile.name}-{stamp}" / "%j"
        job_names = {stage: f"mst-{sweep.name}-{stage}" for stage in sweep.stages}  # what squeue shows
        if dry_run and resubmit:
            out(f"{sweep.name}: dry run, nothing resubmitted; {len(arrays)} array(s) would be")
            return []
        fns_of: list[list[Any]] = [[] for _ in arrays]  # a dry run submits nothing
        if not dry_run:
            # every job callable is built before anything is written or queued: one that cannot be built stops
            # the submission before its first array, not half way through (submitit is imported only here)
            from jobs.stage_job import stage_job

            fns_of = [[stage_job(run, array.stage, profile, folder.root) for run in array.runs] for array in arrays]
            rundir.contained(folder.root, logs.parent)
            rundir.write_run_configs(runs, folder, profile.name)
        records: list[dict[str, Any]] = []
        submitted: list[list[str]] = []
        with slurm_conf_of(profile):
            for i, (array, fns) in enumerate(zip(arrays, fns_of)):
                # a dry run has no job ids yet: the aligned array's number stands in for its id
                dep = dependency_of(None if dry_run else submitted, array)
                if dry_run:
                    out(f"# --- array {i + 1}/{len(arrays)}: {array.stage} x {len(array.runs)} on {profile.name}"
                        + (f", task i waits for task i of array {array.after + 1}" if array.after is not None else "")
                        + (f", waits for its pre-training job {array.waits_for}" if array.waits_for else ""))
                    for t, run in enumerate(array.runs):
                        out(f"#   task {t}: {run.run_id} ({describe(run)})")
                    out(render_sbatch(profile, array.stage, job_names[array.stage], logs, len(array.runs), dep))
                    continue
                ids = submit_array(profile, logs, array.stage, job_names[array.stage], dep, fns)
                submitted.append(ids)
                batch = [rundir.ManifestEntry.of(run, array.stage, jid, profile.name, dep).encode()
                         for run, jid in zip(array.runs, ids)]
                rundir.append_manifest(folder, batch, pooled)  # recorded at once: a dropped session loses nothing
                records += batch
                out(f"submitted {array.stage} x {len(ids)} as {ids[0].split('_')[0]}"
                    + (f" ({dep})" if dep else "") + f" on {profile.name}")
        return records


def manifest_cluster(runs_root: Path, sweep: str) -> str | None:
    """The cluster the sweep was last submitted to, by its manifest (RunFolderError when malformed)."""
    records = [r for r in rundir.read_manifest(rundir.SweepFolder(runs_root, sweep)) if "cluster" in r]
    return records[-1]["cluster"] if records else None


def status(sweep_name: str, cluster: str, runs_root: Path, counter: Callable[[], None] | None = None
           ) -> list[StageState]:
    """The state of every (run, stage) of the sweep as expanded now."""
    sweep, profile, runs = load_for_cluster(sweep_name, cluster)
    keys = [(run.run_id, stage) for run in runs for stage in sweep.stages]
    return stage_states(rundir.SweepFolder(runs_root, sweep.name), keys, profile, counter=counter)


def cancel(sweep_name: str, cluster: str, runs_root: Path, out: Callable[[str], None] = print) -> list[str]:
    """scancel every queued or running job the sweep's manifest names (one poll, one scancel), but a pooled
    pre-training another sweep still waits on: one of its downstream stages of that run is queued, running or
    preempted, or it submitted the pre-training alone (a sweep of pre-trainings only).

    The manifest, not the sweep's current expansion, says what was submitted: run ids change when the code's
    config schema changes, and the jobs submitted before must still be reachable.
    """
    from jobs.sweep import load_sweep

    profile = load_profile(cluster)
    folder = rundir.SweepFolder(runs_root, load_sweep(sweep_name).name)
    name = folder.name
    if profile.scheduler != "slurm":
        out(f"{name}: cluster {profile.name} has no scheduler; nothing to cancel")
        return []
    check_cluster(profile)
    found = stage_states(folder, list(rundir.latest_submissions(folder)), profile, force=True)
    live = {(s.run_id, s.stage): s.job_id for s in found if s.state in IN_FLIGHT and s.job_id}
    shared = [run_id for run_id, stage in live if stage == "pretrain" and folder.links_pretrain(run_id)]
    waiting = pool.waiting_sweeps(runs_root, shared, name, profile)  # run id -> the sweeps waiting on it
    ids = sorted({job for (run_id, stage), job in live.items() if not (stage == "pretrain" and run_id in waiting)})
    kept = "" if not waiting else (f"; left {len(waiting)} shared pre-trainings that "
                                  f"{', '.join(sorted({s for v in waiting.values() for s in v}))} still wait on")
    if not ids:
        out(f"{name}: no queued or running jobs" + kept)
        return []
    scancel(profile, ids)
    clear_cache(folder)
    out(f"{name}: cancelled {len(ids)} jobs" + kept)
    return ids
