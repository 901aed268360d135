"""Submit a sweep to a cluster profile, and later ask for its status, resubmit or cancel it; or run it here.

Submission returns at once: every stage of the sweep becomes job arrays (jobs.plan: split at the profile's
array size limit, throttled by its parallelism, downstream arrays aligned with their pre-training), recorded
in the sweep's manifest before the command ends. Every scheduler call goes through jobs.scheduler.
Pre-trainings live in the runs root's pool (jobs.pool): one a sweep needs that is done is reused, one queued
or running gets the sweep's downstream stages attached, and `cancel` leaves one another sweep waits on.

Scheduler load: `status` reads run-folder markers (result.json) first and asks the scheduler only about the
rest, with one sacct (or squeue) call per sweep, cached for a minute in the sweep folder. The states are the
words of jobs.runstate, which `mst-report status` prints too.
"""

from __future__ import annotations

import calendar
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs import pool, rundir
from jobs.errors import LaunchError
from jobs.plan import (
    ManifestEntry,
    Run,
    dependency,
    describe,
    local_order,
    plan_arrays,
    resolve_runs,
    stage_job,
)
from jobs.profiles import ClusterProfile, load_profile
from jobs.runstate import FINAL, IN_FLIGHT, LOCAL_JOB, is_local_job, sweep_view
from jobs.scheduler import (
    cached_poll,
    check_cluster,
    clear_cache,
    render_sbatch,
    scancel,
    slurm_conf_of,
    submit_array,
    task_state,
)
from jobs.shellsafe import check_shell_path
from mst.run.record import is_done
from mst.stages import NEEDS_PRETRAIN

__all__ = ["LaunchError", "LocalFailures", "StageState", "cancel", "check_cluster", "manifest_cluster",
           "run_local", "stage_states", "status", "submit", "write_run_configs"]


class LocalFailures(LaunchError):
    """Some stages of a local sweep failed; the others ran. The message is the one-line summary."""


def write_run_configs(runs: list[Run], folder: rundir.SweepFolder, cluster: str) -> None:
    """config.yaml of every run (and of its pool entry), and the link from each run folder to its pooled
    pre-training (libyaml's emitter when present: the pure-Python one dominates big sweeps).

    A run folder (or pool entry) that already holds another config (the sweep ran on a cluster with another
    precision or data root under this runs root) raises LaunchError, before anything is written or submitted.
    """
    import yaml

    from jobs.yaml_read import read_yaml_file
    from mst.inputs import InputError

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    pooled = folder.pooled(run.run_id for run in runs if "pretrain" in run.spec.stages)
    entries = rundir.SweepFolder(folder.root, rundir.POOL)
    texts = {}
    for run, home in [(run, folder) for run in runs] + [(run, entries) for run in runs if run.run_id in pooled]:
        path = rundir.contained(folder.root, home.run(run.run_id) / "config.yaml")
        texts[path] = yaml.dump(run.config_dict, Dumper=dumper, sort_keys=False)
        if path.is_file() and path.read_bytes() != texts[path].encode():
            try:
                found = read_yaml_file(path, "run config")
            except (yaml.YAMLError, UnicodeDecodeError, InputError, OSError):
                raise LaunchError(f"{path} is not valid YAML (it was not written by mst-sweep, or was edited); "
                                  "it is left as it is: move it aside, or submit with another --runs root") from None
            if found != run.config_dict:
                raise LaunchError(f"run folder {path.parent} holds another config than cluster '{cluster}' would "
                                  "run (another precision or data root); submit with another --runs root")
    for path, text in texts.items():
        rundir.write_config(folder.root, path, text)
    for run_id in sorted(pooled):
        rundir.link_pretrain(folder, run_id)


# ------------------------------------------------------------------------------------------- state


@dataclass(frozen=True)
class StageState:
    """Where one (run, stage) of a sweep stands, as `mst-sweep status` lists it."""

    run_id: str
    """The run's id, its folder's name."""
    stage: str
    """The stage."""
    state: str
    """A word of jobs.runstate.STATES."""
    job_id: str | None
    """The job of its latest submission (the pool's, for a pooled pre-training); None when never submitted."""
    detail: str = ""
    """Why it is in that state: the scheduler's word, or what the record or the manifest says."""


def stage_states(folder: rundir.SweepFolder, keys: list[tuple[str, str]], profile: ClusterProfile,
                 pooled: set[str] | None = None, force: bool = False, counter: Callable[[], None] | None = None,
                 ask_scheduler: bool = True) -> list[StageState]:
    """The state of every (run_id, stage) of `keys`, in their order: its record (result.json) and its latest
    submission (the manifest), then for the ones neither finished nor run here one (cached) scheduler poll.

    `pooled`: the run ids whose pre-training is the pool's (default: all the sweep does not hold as its own);
    their record and latest job are the pool's, whichever sweep submitted it.
    """
    if pooled is None:
        pooled = folder.pooled(run_id for run_id, stage in keys if stage == "pretrain")
    latest = rundir.latest_submissions(folder, pooled)
    entries = rundir.SweepFolder(folder.root, rundir.POOL)
    found = []  # (key, record status, job id, seconds since its submission)
    for run_id, stage in keys:
        home = entries if stage == "pretrain" and run_id in pooled else folder
        marker = rundir.result_status(home.stage(run_id, stage))
        record = latest.get((run_id, stage))
        age = 1e9
        if record and "time" in record:
            age = time.time() - calendar.timegm(time.strptime(record["time"], "%Y-%m-%dT%H:%M:%SZ"))
        found.append(((run_id, stage), marker, str(record["job_id"]) if record else None, age))
    # the scheduler is asked only about the latest jobs of stages without a final record
    unresolved = [(job, age) for _, marker, job, age in found if marker not in FINAL and job is not None]
    arrays = sorted({job.split("_")[0] for job, _ in unresolved if not is_local_job(job)})
    answer: dict[str, str] = {}
    if arrays and ask_scheduler and profile.scheduler == "slurm":
        since = time.time() - max(age for _, age in unresolved)
        answer = cached_poll(profile, folder, arrays, force, counter, since)
    out = []
    for (run_id, stage), marker, job_id, age in found:
        sched = task_state(answer, job_id) if job_id else None
        state, detail = sweep_view(marker, job_id, sched, age, asked=ask_scheduler)
        out.append(StageState(run_id, stage, state, job_id, detail))
    return out


# ------------------------------------------------------------------------------------------- submit


def load_for_cluster(sweep_name: str, cluster: str) -> tuple[Any, ClusterProfile, list[Run]]:
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
        if pooled or own:
            keys = [(run_id, "pretrain") for run_id in sorted(pooled)]
            pre = stage_states(folder, keys, profile, pooled, ask_scheduler=False)
            out(f"{sweep.name}: " + pool.share_line(sorted(pooled), {s.run_id: s.state for s in pre}, own=own))
        if dry_run:
            for run in runs:
                out(f"would run {', '.join(sweep.stages)} of {run.run_id} ({describe(run)}) in this process")
            return []
        with rundir.submit_locks(root, [folder.path], sweep=sweep.name):
            return run_local(sweep, profile, runs, folder, out)
    # the runs root reaches #SBATCH lines and srun's command line: refuse what cannot travel there safely
    try:
        check_shell_path(str(root.resolve()))
    except ValueError as err:
        raise LaunchError(f"runs root {str(root)!r} {err}; Slurm scripts on cluster '{profile.name}' cannot "
                          "carry it safely: use --runs with a plain path (letters, digits and ./_-+@,:=~)") from None
    if dry_run:
        if resubmit:  # why a stage is resubmitted is the scheduler's answer (cancelled, failed, lost)
            check_cluster(profile)
        return _submit_slurm(sweep, profile, runs, folder, pooled, own, True, resubmit, out, planned)
    check_cluster(profile)
    # the pool entries' locks: held from reading their states until their jobs are in the pool's manifest
    entries = rundir.SweepFolder(root, rundir.POOL)
    with (rundir.submit_locks(root, [folder.path], sweep=sweep.name),
          rundir.submit_locks(root, [entries.run(run_id) for run_id in pooled])):
        return _submit_slurm(sweep, profile, runs, folder, pooled, own, False, resubmit, out)


def _submit_slurm(sweep: Any, profile: ClusterProfile, runs: list[Run], folder: rundir.SweepFolder,
                  pooled: set[str], own: int, dry_run: bool, resubmit: bool, out: Callable[[str], None],
                  planned: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Plan the arrays of what is not done nor in flight, then print them (dry run) or submit them; `pooled`:
    the run ids whose pre-training is the pool's, `own`: how many the sweep holds in its own folders."""
    keys = [(run.run_id, stage) for run in runs for stage in sweep.stages]
    states = stage_states(folder, keys, profile, pooled, force=True, ask_scheduler=resubmit or not dry_run)
    by_id = {run.run_id: run for run in runs}
    todo: dict[str, list[Run]] = {}  # stage -> the runs to submit it for
    skipped: dict[str, int] = {}  # state -> how many (run, stage) pairs are left alone in it
    live: dict[str, str] = {}  # run id -> the job of its pre-training still in the scheduler
    for s in states:
        if s.state == "done" or s.state in IN_FLIGHT:
            skipped[s.state] = skipped.get(s.state, 0) + 1
            if s.stage == "pretrain" and s.state in IN_FLIGHT and s.job_id:
                live[s.run_id] = s.job_id
            continue
        todo.setdefault(s.stage, []).append(by_id[s.run_id])
        if dry_run and resubmit:
            out(f"would resubmit {s.stage} {s.run_id} ({describe(by_id[s.run_id])}): {s.state}"
                + (f", {s.detail}" if s.detail else "") + (f" (job {s.job_id})" if s.job_id else ""))
    if planned is not None:  # a dry run of several sweeps in sequence: an earlier one's new pre-training is shared
        for run in [r for r in todo.get("pretrain", []) if r.run_id in planned and r.run_id in pooled]:
            todo["pretrain"].remove(run)
            live[run.run_id] = planned[run.run_id]
    if pooled or own:
        pre_states = {s.run_id: s.state for s in states if s.stage == "pretrain"}
        out(f"{sweep.name}: " + pool.share_line(sorted(pooled), pre_states, planned, own))
    if planned is not None:
        planned.update({r.run_id: f"<pre-training planned by {sweep.name}>" for r in todo.get("pretrain", [])
                        if r.run_id in pooled})
    arrays = plan_arrays(todo, sweep.stages, profile.limits.array_size, live)
    if skipped:
        out(f"{sweep.name}: skipping " + ", ".join(f"{n} {k}" for k, n in sorted(skipped.items()))
            + " (run, stage) pairs")
    if not arrays:
        out(f"{sweep.name}: nothing to {'resubmit' if resubmit else 'submit'} on {profile.name}")
        return []
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
    logs = folder.submitit.resolve() / f"{profile.name}-{stamp}" / "%j"
    job_names = {stage: f"mst-{sweep.name}-{stage}" for stage in sweep.stages}  # what squeue shows
    if dry_run:
        if resubmit:
            out(f"{sweep.name}: dry run, nothing resubmitted; {len(arrays)} array(s) would be")
            return []
        for i, array in enumerate(arrays):
            out(f"# --- array {i + 1}/{len(arrays)}: {array.stage} x {len(array.runs)} on {profile.name}"
                + (f", task i waits for task i of array {array.after + 1}" if array.after is not None else "")
                + (f", waits for its pre-training job {array.waits_for}" if array.waits_for else ""))
            for t, run in enumerate(array.runs):
                out(f"#   task {t}: {run.run_id} ({describe(run)})")
            out(render_sbatch(profile, array.stage, job_names[array.stage], logs, len(array.runs),
                              dependency(None, array)))
        return []

    rundir.contained(folder.root, logs.parent)
    write_run_configs(runs, folder, profile.name)
    records: list[dict[str, Any]] = []
    submitted: list[list[str]] = []
    with slurm_conf_of(profile):
        for array in arrays:
            dep = dependency(submitted, array)
            fns = [stage_job(run, array.stage, profile, folder.root) for run in array.runs]
            ids = submit_array(profile, logs, array.stage, job_names[array.stage], dep, fns)
            submitted.append(ids)
            batch = [ManifestEntry.of(run, array.stage, jid, profile.name, dep).encode()
                     for run, jid in zip(array.runs, ids)]
            rundir.append_manifest(folder, batch)  # recorded at once: a dropped session loses nothing
            shared = [{**r, "sweep": sweep.name} for r in batch
                      if r["stage"] == "pretrain" and r["run_id"] in pooled]
            if shared:  # the pool's own list: the next sweep that needs these finds their jobs there
                rundir.append_manifest(rundir.SweepFolder(folder.root, rundir.POOL), shared)
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
    waiting: dict[str, list[str]] = {}  # run id -> the other sweeps still waiting on its pooled pre-training
    for run_id in [r for r, stage in live if stage == "pretrain" and folder.links_pretrain(r)]:
        for other in pool.users(runs_root, run_id, but=name):
            other_folder = rundir.SweepFolder(runs_root, other)
            keys = [k for k in rundir.latest_submissions(other_folder) if k[0] == run_id]
            downstream = [k for k in keys if k[1] != "pretrain"]
            if (keys and not downstream) or (downstream and any(
                    s.state in IN_FLIGHT for s in stage_states(other_folder, downstream, profile))):
                waiting.setdefault(run_id, []).append(other)
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


def run_local(sweep: Any, profile: ClusterProfile, runs: list[Run], folder: rundir.SweepFolder,
              out: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Cluster `local`: every stage of every run in this process, one after another, with progress bars.

    Done stages are skipped; an interrupted stage (Ctrl-C) saves at its step boundary and the same command
    resumes it. A failing stage is recorded (its result.json says failed, and why), the run's later stages
    that need it are skipped, and every other run still runs; the sweep then ends with a one-line summary
    (LocalFailures) and a non-zero exit.
    """
    from rich.console import Console

    from mst.train import Interrupted

    console = Console(stderr=True)
    write_run_configs(runs, folder, profile.name)
    tasks = [(run, stage) for run in local_order(runs, sweep.stages, folder) for stage in sweep.stages]
    records = []
    done = skipped = 0
    failures: list[str] = []
    broken: set[str] = set()  # runs whose pre-training failed in this pass
    for i, (run, stage) in enumerate(tasks, 1):
        head = f"[{i}/{len(tasks)}] {stage} {run.run_id}"
        # asked here, not planned ahead: another local sweep sharing a pooled pre-training may have finished it
        if is_done(folder.stage(run.run_id, stage)) is not None:
            out(f"{head} ({describe(run)}): done already")
            done += 1
            continue
        if stage in NEEDS_PRETRAIN and run.run_id in broken:
            out(f"{head}: skipped (its pretrain failed)")
            skipped += 1
            continue
        console.rule(f"{head} ({describe(run)})")
        record = ManifestEntry.of(run, stage, f"{LOCAL_JOB}-{os.getpid()}", profile.name, None).encode()
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
