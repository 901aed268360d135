"""Submit a sweep to a cluster profile, and later ask for its status, resubmit or cancel it.

Submission returns at once: every stage of the sweep becomes job arrays (split at the profile's array size
limit, throttled by its parallelism), recorded in the sweep's manifest before the command ends.

Dependencies: a downstream stage (k-NN, probes, attention) is a *dependent array aligned task-for-task* with
its pre-training array: task i of both arrays is the same run, and `--dependency=aftercorr:<pretrain array>`
lets task i start once pre-training task i completed successfully. A failed pre-training task cancels only
its own downstream task (`--kill-on-invalid-dep=yes`), never the whole array; a requeued pre-training task
simply keeps its downstream task waiting. Runs whose pre-training is already done get downstream arrays
without a dependency.

Scheduler load: `status` reads run-folder markers (result.json) first and asks the scheduler only about the
rest, with one sacct (or squeue) call per sweep, cached for a minute in the sweep folder.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs import rundir
from jobs.profiles import ClusterProfile, check_shell_path, config_overrides, load_profile, slurm_parameters
from jobs.runstate import IN_FLIGHT
from jobs.runstate import classify as _classify
from mst.atomic import atomic_write_json

STATUS_CACHE_S = 60.0
# how often a transient sbatch failure (slurmctld busy) is retried, and the first back-off
SBATCH_TRIES, SBATCH_BACKOFF_S = 3, 2.0


class LaunchError(RuntimeError):
    """The cluster cannot take the submission; one line saying why and what to do."""


@dataclass(frozen=True)
class Run:
    """A run of the sweep as this cluster will run it (profile precision and data root applied)."""

    run_id: str
    """The sweep's run id (config_hash of the sweep's resolved config + '-r<repeat>'): names the folder."""
    spec: Any
    """The jobs.sweep.RunSpec it comes from."""
    config: Any
    """The resolved mst.config.Config."""
    config_dict: dict | None = None
    """config_to_dict(config), computed once (it feeds the run id, config.yaml and the job's pickle)."""


@dataclass(frozen=True)
class Array:
    """One job array to submit: a stage for a list of runs, maybe aligned with a pre-training array."""

    stage: str
    """Stage name."""
    runs: tuple[Run, ...]
    """Runs, in task order."""
    after: int | None = None
    """Index (in the plan) of the pre-training array this one is aligned with, or None."""
    waits_for: str | None = None
    """The live pre-training job (queued, running or preempted) this single-run array depends on, or None."""


# ------------------------------------------------------------------------------------------- runs


def _with_overrides(cfg: Any, overrides: dict[str, Any]) -> Any:
    """cfg with dotted section.field overrides, through dataclasses.replace (each section re-validates)."""
    for key, value in overrides.items():
        section, name = key.split(".", 1)
        cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **{name: value})})
    return cfg


def resolve_runs(sweep: Any, profile: ClusterProfile) -> list[Run]:
    """Expand the sweep and apply what the profile implies (precision, data root).

    The run id stays the sweep's (jobs.sweep.RunSpec.run_id), so `mst-report` finds the runs of every
    cluster; config.yaml and result.json hold the config that really ran, and its own config_hash.
    Runs of one cell differ only in their seed, so the config dict is built once per cell (building it is
    what makes a 100-run sweep slow to submit) and the seed is set per run.
    """
    from jobs.sweep import cell_key
    from mst.config import config_to_dict

    runs = []
    per_cell: dict[str, dict] = {}
    for spec in sweep.expand():
        cfg = _with_overrides(spec.config, config_overrides(profile, spec.config.data.name))
        key = cell_key(spec.cell)
        if key not in per_cell:
            per_cell[key] = config_to_dict(cfg)
        data = copy.deepcopy(per_cell[key])
        data["train"]["seed"] = cfg.train.seed
        runs.append(Run(spec.run_id, spec, cfg, data))
    return runs


def make_stage_job(run: Run, stage: str, profile: ClusterProfile, runs_root: Path) -> Any:
    from jobs.stages import StageJob
    from mst.config import config_to_dict

    spec = run.spec
    extra = {"run_id": run.run_id, "sweep": spec.sweep, "cell": spec.cell, "repeat": spec.repeat,
             "seed": spec.seed, "cluster": profile.name}
    return StageJob(stage, runs_root=str(runs_root), sweep=spec.sweep, run_id=run.run_id,
                    config=run.config_dict or config_to_dict(run.config), extra=extra, preempt_signal=profile.preemption.signal,
                    visible_devices=profile.environment.visible_devices,
                    node_dirs=profile.environment.node_dirs, device_kind=profile.accelerators.kind)


def write_run_configs(runs: list[Run], runs_root: Path, cluster: str) -> None:
    """config.yaml of every run (libyaml's emitter when present: the pure-Python one dominates big sweeps).

    A run folder that already holds another config (the sweep ran on a cluster with another precision or data
    root under this runs root) stops the submission before anything is written or submitted.
    """
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    texts = {}
    for run in runs:
        path = rundir.contained(runs_root, rundir.run_dir(runs_root, run.spec.sweep, run.run_id) / "config.yaml")
        texts[path] = yaml.dump(run.config_dict, Dumper=dumper, sort_keys=False)
        if path.is_file() and path.read_bytes() != texts[path].encode():
            try:
                found = yaml.safe_load(path.read_bytes())
            except (yaml.YAMLError, UnicodeDecodeError):
                raise LaunchError(f"{path} is not valid YAML (it was not written by mst-sweep, or was edited); "
                                  "it is left as it is: move it aside, or submit with another --runs root") from None
            if found != run.config_dict:
                raise LaunchError(f"run folder {path.parent} holds another config than cluster '{cluster}' would "
                                  "run (another precision or data root); submit with another --runs root")
    for path, text in texts.items():
        rundir.write_config(runs_root, path, text)


def plan_arrays(todo: dict[str, list[Run]], stages: tuple[str, ...], array_size: int,
                live: dict[str, str] | None = None) -> list[Array]:
    """Job arrays for the (stage -> runs) still to do; downstream arrays aligned with pre-training chunks.

    `live` maps run id -> job id of a pre-training still in the scheduler (queued, running or preempted): a
    downstream stage of such a run is a one-run job that waits for that job, never an unguarded one. A
    downstream run whose pre-training is neither resubmitted now nor live must have finished it.
    """
    from jobs.sweep import NEEDS_PRETRAIN

    live = live or {}

    def chunks(runs: list[Run]) -> list[tuple[Run, ...]]:
        return [tuple(runs[i:i + array_size]) for i in range(0, len(runs), array_size)]

    arrays: list[Array] = []
    pre = todo.get("pretrain", [])
    pre_ids = {r.run_id for r in pre}
    pre_chunks = chunks(pre)
    for chunk in pre_chunks:
        arrays.append(Array("pretrain", chunk))
    for stage in stages:
        if stage == "pretrain" or not todo.get(stage):
            continue
        rest = todo[stage]
        if stage in NEEDS_PRETRAIN:
            # every run whose pre-training is resubmitted now reruns this stage too, aligned task-for-task
            for i, chunk in enumerate(pre_chunks):
                arrays.append(Array(stage, chunk, after=i))
            rest = [r for r in rest if r.run_id not in pre_ids]
            for run in rest:
                if run.run_id in live:
                    arrays.append(Array(stage, (run,), waits_for=live[run.run_id]))
            rest = [r for r in rest if r.run_id not in live]
        for chunk in chunks(rest):
            arrays.append(Array(stage, chunk))
    return arrays


# ------------------------------------------------------------------------------------------- scheduler


def _slurm_env(profile: ClusterProfile) -> dict[str, str]:
    env = dict(os.environ)
    if profile.slurm_conf:
        env["SLURM_CONF"] = profile.slurm_conf
    return env


def check_cluster(profile: ClusterProfile) -> None:
    """Fail in one line when this machine cannot submit to the profile's cluster."""
    for tool in ("sbatch", "srun", "scontrol"):
        if shutil.which(tool) is None:
            raise LaunchError(f"{tool} not found: cluster '{profile.name}' is not reachable from this machine; "
                              "submit from one of its login nodes, or preview with --dry-run")
    if profile.slurm_conf and not Path(profile.slurm_conf).is_file():
        raise LaunchError(f"cluster '{profile.name}': {profile.slurm_conf} does not exist; start the local "
                          "clusters with `sudo bash clusters/local-slurm/start.sh` or fix slurm_conf")
    env = _slurm_env(profile)
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%R"], check=False, env=env, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        raise LaunchError(f"cluster '{profile.name}' does not answer (sinfo timed out after 30 s); "
                          "retry later or ask the site whether slurmctld is up") from None
    if out.returncode != 0:
        why = (out.stderr.strip().splitlines() or ["no answer"])[-1]
        raise LaunchError(f"cluster '{profile.name}' is unreachable ({why}); start it "
                          "(clusters/local-slurm/start.sh for the local ones) or check SLURM_CONF")
    partitions = set(out.stdout.split())
    if profile.placement.partition not in partitions:
        raise LaunchError(f"cluster '{profile.name}': partition '{profile.placement.partition}' does not exist "
                          f"on the cluster this machine reaches (it has: {', '.join(sorted(partitions))}); "
                          "submit from the right cluster or fix placement.partition")


def poll_scheduler(profile: ClusterProfile, array_ids: list[str], since: float | None = None) -> dict[str, str]:
    """States of every job (and array task) of `array_ids` in ONE scheduler call: {'123_4': 'RUNNING'}.

    `since` (epoch seconds, the earliest submission asked about) keeps sacct from answering with older jobs
    that had the same ids: ids restart when a cluster's state is wiped.
    """
    if not array_ids:
        return {}
    from submitit.slurm.slurm import SlurmInfoWatcher

    env = _slurm_env(profile)
    ids = ",".join(sorted(set(array_ids)))
    if profile.limits.sacct:
        cmd = ["sacct", "-X", "--parsable2", "-o", "JobID,State", "-j", ids]
        if since is not None:
            cmd += ["-S", time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(since - 120))]
    else:
        cmd = ["squeue", "-r", "-h", "-o", "%i|%T", "-j", ids]
    try:
        out = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise LaunchError(f"cannot ask cluster '{profile.name}' for job states ({err}); retry later") from None
    if out.returncode != 0:
        why = (out.stderr.strip().splitlines() or ["no answer"])[-1]
        raise LaunchError(f"cluster '{profile.name}' did not answer {cmd[0]} ({why}); retry later")
    text = out.stdout if profile.limits.sacct else "JobID|State\n" + out.stdout
    lines = text.splitlines()
    if lines and lines[0].split("|")[:2] != ["JobID", "State"]:
        raise LaunchError(f"cannot read {cmd[0]}'s answer from cluster '{profile.name}' (it begins "
                          f"{lines[0][:60]!r}, not 'JobID|State'); check that `{cmd[0]}` works on this machine, "
                          "then retry")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # submitit warns about job ids it cannot read; those are reported below
        info = SlurmInfoWatcher().read_info(text)
    bad = [ln for ln in lines[1:] if ln.strip() and "|" not in ln]
    if bad or (len(lines) > 1 and not info and any(ln.strip() for ln in lines[1:])):
        first = (bad or [ln for ln in lines[1:] if ln.strip()])[0]
        raise LaunchError(f"cannot read {cmd[0]}'s answer from cluster '{profile.name}' (line {first[:60]!r}); "
                          f"check that `{cmd[0]}` works on this machine, then retry")
    # "CANCELLED by 0" -> "CANCELLED"
    return {job: (fields.get("State") or "UNKNOWN").split()[0] for job, fields in info.items()}


def cached_poll(profile: ClusterProfile, sweep_path: Path, array_ids: list[str], force: bool = False,
                counter: Callable[[], None] | None = None, since: float | None = None) -> dict[str, str]:
    """poll_scheduler, reusing the sweep's cached answer when it is younger than a minute."""
    cache = sweep_path / ".scheduler_cache.json"
    wanted = sorted(set(array_ids))
    if not force:
        hit = _cached_states(cache, profile.name, wanted)
        if hit is not None:
            return hit
    states = poll_scheduler(profile, wanted, since)
    if counter:
        counter()
    # the cache is this module's own, disposable data: one it cannot read is replaced by the fresh answer
    atomic_write_json(rundir.contained(sweep_path.parent, cache),
                      {"time": time.time(), "cluster": profile.name, "arrays": wanted, "states": states})
    return states


def _cached_states(cache: Path, cluster: str, wanted: list[str]) -> dict[str, str] | None:
    """The cached answer when it is fresh, for this cluster and these arrays, and well-formed; else None."""
    try:
        data = json.loads(cache.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    stamp, arrays, states = data.get("time"), data.get("arrays"), data.get("states")
    if (not isinstance(stamp, (int, float)) or isinstance(stamp, bool) or not isinstance(arrays, list)
            or not isinstance(states, dict) or not all(isinstance(a, str) for a in arrays)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in states.items())):
        return None
    if 0 <= time.time() - stamp < STATUS_CACHE_S and data.get("cluster") == cluster and set(wanted) <= set(arrays):
        return states
    return None


def task_state(states: dict[str, str], job_id: str) -> str | None:
    """The scheduler's state of one job or array task ('123_4'), None when the answer does not name it.

    sacct reports an array cancelled before Slurm split it into tasks under the bare array id ('123'), not
    per task: such a task inherits the array's state.
    """
    if job_id in states:
        return states[job_id]
    return states.get(job_id.split("_")[0]) if "_" in job_id else None


# ------------------------------------------------------------------------------------------- state


@dataclass(frozen=True)
class StageState:
    run: Run
    stage: str
    state: str
    """A word of jobs.runstate.STATES."""
    job_id: str | None
    detail: str = ""


def _age_s(stamp: str) -> float:
    import calendar

    return time.time() - calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))


def _states(keys: list[tuple[str, str]], profile: ClusterProfile, runs_root: Path, sweep: str,
            force: bool = False, counter: Callable[[], None] | None = None, ask_scheduler: bool = True
            ) -> dict[tuple[str, str], tuple[str, str, str | None]]:
    """(run_id, stage) -> (state, detail, job id): markers first, then one (cached) scheduler poll."""
    latest = rundir.latest_submissions(runs_root, sweep)
    pending = []
    for run_id, stage in keys:
        marker = rundir.result_status(rundir.stage_dir(runs_root, sweep, run_id, stage))
        rec = latest.get((run_id, stage))
        job_id = str(rec["job_id"]) if rec else None
        pending.append((run_id, stage, marker, job_id, _age_s(rec["time"]) if rec and "time" in rec else 1e9))
    unresolved = [p for p in pending if p[2] not in rundir.FINAL_STATES and p[3] is not None]
    arrays = sorted({p[3].split("_")[0] for p in unresolved if not p[3].startswith("local")})
    states: dict[str, str] = {}
    if arrays and ask_scheduler and profile.scheduler == "slurm":
        since = time.time() - max(p[4] for p in unresolved)
        states = cached_poll(profile, rundir.sweep_dir(runs_root, sweep), arrays, force, counter, since)
    out = {}
    for run_id, stage, marker, job_id, age in pending:
        if job_id is not None and job_id.startswith("local") and marker not in rundir.FINAL_STATES:
            out[(run_id, stage)] = (marker or "failed", "local run", job_id)
            continue
        state, detail = _classify(marker, task_state(states, job_id) if job_id else None, job_id, age)
        if not ask_scheduler and state in ("lost", "failed") and job_id is not None and marker is None:
            state, detail = "unknown", "scheduler not asked"
        out[(run_id, stage)] = (state, detail, job_id)
    return out


def sweep_states(runs: list[Run], stages: tuple[str, ...], profile: ClusterProfile, runs_root: Path,
                 sweep: str, force: bool = False, counter: Callable[[], None] | None = None,
                 ask_scheduler: bool = True) -> list[StageState]:
    """The state of every (run, stage) of the sweep as expanded now."""
    keys = [(run.run_id, stage) for run in runs for stage in stages]
    found = _states(keys, profile, runs_root, sweep, force, counter, ask_scheduler)
    by_id = {run.run_id: run for run in runs}
    out = []
    for run_id, stage in keys:
        state, detail, job_id = found[(run_id, stage)]
        out.append(StageState(by_id[run_id], stage, state, job_id, detail))
    return out


# ------------------------------------------------------------------------------------------- submit


def load_for_cluster(sweep_name: str, cluster: str) -> tuple[Any, ClusterProfile, list[Run]]:
    from jobs.sweep import load_sweep

    profile = load_profile(cluster)
    sweep = load_sweep(sweep_name)
    return sweep, profile, resolve_runs(sweep, profile)


def submitit_command(python: str, folder: Path) -> str:
    """The command submitit puts in every sbatch script (as SlurmExecutor builds it)."""
    return " ".join([python, "-u -m submitit.core._submit", shlex.quote(str(folder))])


def render_sbatch(profile: ClusterProfile, stage: str, job_name: str, folder: Path, n_tasks: int,
                  dependency: str | None = None) -> str:
    """The sbatch script submitit writes for this array (submitit's own renderer, no submission)."""
    from submitit.slurm.slurm import _make_sbatch_string

    params = slurm_parameters(profile, stage, job_name)
    if dependency:
        params["dependency"] = dependency
    return _make_sbatch_string(command=submitit_command(_python(profile), folder), folder=folder,
                               map_count=n_tasks if n_tasks > 1 else None, **params)


def _python(profile: ClusterProfile) -> str:
    """The interpreter word of the job's command line, shell-quoted (the profile's, else this one)."""
    return shlex.quote(profile.environment.python or sys.executable)


def _job_name(sweep: str, stage: str) -> str:
    return f"mst-{sweep}-{stage}"


def _dependency(submitted: list[list[str]], array: Array) -> str | None:
    if array.waits_for is not None:
        return f"afterok:{array.waits_for}"  # a job id or an array task id ('123_4'): Slurm takes both
    if array.after is None:
        return None
    ids = submitted[array.after]
    if len(ids) == 1 and "_" not in ids[0]:
        return f"afterok:{ids[0]}"  # a single run is a plain job, not an array
    return f"aftercorr:{ids[0].split('_')[0]}"


def _submit_array(executor: Any, fns: list[Any]) -> list[Any]:
    """executor.submit_array with retries when sbatch times out under load."""
    from submitit.core.utils import FailedJobError

    delay = SBATCH_BACKOFF_S
    for attempt in range(SBATCH_TRIES):
        try:
            return executor.submit_array(fns)
        except FailedJobError as err:
            text = str(err)
            transient = any(s in text for s in ("timed out", "Socket timed out", "try again", "busy"))
            if not transient or attempt == SBATCH_TRIES - 1:
                lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
                why = next((ln for ln in reversed(lines) if "error" in ln.lower()), lines[-1] if lines else "")
                raise LaunchError(f"sbatch refused the {len(fns)}-task array ({why}); "
                                  "check the profile's partition and resources (sinfo, scontrol show partition)")
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def _check_runs_root(root: Path, profile: ClusterProfile) -> None:
    """The runs root reaches #SBATCH lines and srun's command line: refuse what cannot travel there safely."""
    try:
        check_shell_path(str(root.resolve()))
    except ValueError as err:
        raise LaunchError(f"runs root {str(root)!r} {err}; Slurm scripts on cluster '{profile.name}' cannot "
                          "carry it safely: use --runs with a plain path (letters, digits and ./_-+@,:=~)") from None


def submit(sweep_name: str, cluster: str, runs_root: str | None = None, dry_run: bool = False,
           resubmit: bool = False, out: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Submit what is not done nor in flight; returns the manifest records written (none on --dry-run).

    One submission of a sweep at a time (rundir.submission_lock): a second one fails in one line instead of
    submitting the same runs twice. A dry run writes nothing, so it takes no lock.
    """
    sweep, profile, runs = load_for_cluster(sweep_name, cluster)
    root = Path(runs_root or profile.storage.run_root)
    if profile.scheduler == "local":
        if dry_run:
            for run in runs:
                out(f"would run {', '.join(sweep.stages)} of {run.run_id} ({_cell(run)}) in this process")
            return []
        with rundir.submission_lock(root, sweep.name):
            return run_local(sweep, profile, runs, root, out)
    _check_runs_root(root, profile)
    if dry_run:
        return _submit_slurm(sweep, profile, runs, root, True, resubmit, out)
    check_cluster(profile)
    with rundir.submission_lock(root, sweep.name):
        return _submit_slurm(sweep, profile, runs, root, False, resubmit, out)


def _submit_slurm(sweep: Any, profile: ClusterProfile, runs: list[Run], root: Path, dry_run: bool,
                  resubmit: bool, out: Callable[[str], None]) -> list[dict[str, Any]]:
    states = sweep_states(runs, sweep.stages, profile, root, sweep.name, force=True, ask_scheduler=not dry_run)
    todo: dict[str, list[Run]] = {}
    skipped: dict[str, int] = {}
    live: dict[str, str] = {}
    for s in states:
        if s.state == "done" or s.state in IN_FLIGHT:
            skipped[s.state] = skipped.get(s.state, 0) + 1
            if s.stage == "pretrain" and s.state in IN_FLIGHT and s.job_id:
                live[s.run.run_id] = s.job_id
            continue
        todo.setdefault(s.stage, []).append(s.run)
    arrays = plan_arrays(todo, sweep.stages, profile.limits.array_size, live)
    if skipped:
        out(f"{sweep.name}: skipping " + ", ".join(f"{n} {k}" for k, n in sorted(skipped.items()))
            + " (run, stage) pairs")
    if not arrays:
        out(f"{sweep.name}: nothing to {'resubmit' if resubmit else 'submit'} on {profile.name}")
        return []
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
    folder = rundir.submitit_dir(root, sweep.name).resolve() / f"{profile.name}-{stamp}" / "%j"
    if dry_run:
        for i, array in enumerate(arrays):
            dep = None if array.after is None else f"aftercorr:<job id of array {array.after + 1}>"
            dep = f"afterok:{array.waits_for}" if array.waits_for else dep
            out(f"# --- array {i + 1}/{len(arrays)}: {array.stage} x {len(array.runs)} on {profile.name}"
                + (f", task i waits for task i of array {array.after + 1}" if array.after is not None else "")
                + (f", waits for its pre-training job {array.waits_for}" if array.waits_for else ""))
            for t, run in enumerate(array.runs):
                out(f"#   task {t}: {run.run_id} ({_cell(run)})")
            out(render_sbatch(profile, array.stage, _job_name(sweep.name, array.stage), folder,
                              len(array.runs), dep))
        return []

    import submitit

    rundir.contained(root, folder.parent)
    write_run_configs(runs, root, profile.name)
    records: list[dict[str, Any]] = []
    submitted: list[list[str]] = []
    with slurm_conf_of(profile):
        for array in arrays:
            executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=profile.preemption.max_requeues,
                                              python=_python(profile))
            params = slurm_parameters(profile, array.stage, _job_name(sweep.name, array.stage))
            dep = _dependency(submitted, array)
            if dep:
                params["dependency"] = dep
            executor.update_parameters(**params)
            fns = [make_stage_job(run, array.stage, profile, root) for run in array.runs]
            jobs = _submit_array(executor, fns)
            ids = [j.job_id for j in jobs]
            submitted.append(ids)
            batch = [{"run_id": run.run_id, "stage": array.stage, "job_id": jid, "cluster": profile.name,
                      "dependency": dep, "repeat": run.spec.repeat, "cell": run.spec.cell}
                     for run, jid in zip(array.runs, ids)]
            rundir.append_manifest(root, sweep.name, batch)  # recorded at once: a dropped session loses nothing
            records += batch
            out(f"submitted {array.stage} x {len(ids)} as {ids[0].split('_')[0]}"
                + (f" ({dep})" if dep else "") + f" on {profile.name}")
    return records


@contextlib.contextmanager
def slurm_conf_of(profile: ClusterProfile) -> Iterator[None]:
    """SLURM_CONF set to the profile's cluster while the block runs (sbatch, and the jobs it starts, reach that
    cluster), the caller's value restored after."""
    if not profile.slurm_conf:
        yield
        return
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = profile.slurm_conf
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old


def _cell(run: Run) -> str:
    from jobs.sweep import cell_label

    return f"{cell_label(run.spec.cell)}, repeat {run.spec.repeat}"


def manifest_cluster(runs_root: Path, sweep: str) -> str | None:
    """The cluster the sweep was last submitted to, by its manifest (RunFolderError when malformed)."""
    records = [r for r in rundir.read_manifest(runs_root, sweep) if "cluster" in r]
    return records[-1]["cluster"] if records else None


def status(sweep_name: str, cluster: str, runs_root: Path, counter: Callable[[], None] | None = None
           ) -> list[StageState]:
    sweep, profile, runs = load_for_cluster(sweep_name, cluster)
    return sweep_states(runs, sweep.stages, profile, runs_root, sweep.name, counter=counter)


def cancel(sweep_name: str, cluster: str, runs_root: Path, out: Callable[[str], None] = print) -> list[str]:
    """scancel every queued or running job the sweep's manifest names (one poll, one scancel).

    The manifest, not the sweep's current expansion, says what was submitted: run ids change when the code's
    config schema changes, and the jobs submitted before must still be reachable.
    """
    from jobs.sweep import load_sweep

    profile = load_profile(cluster)
    name = load_sweep(sweep_name).name
    if profile.scheduler != "slurm":
        out(f"{name}: cluster {profile.name} has no scheduler; nothing to cancel")
        return []
    check_cluster(profile)
    keys = list(rundir.latest_submissions(runs_root, name))
    found = _states(keys, profile, runs_root, name, force=True)
    ids = sorted({job for state, _, job in found.values() if state in IN_FLIGHT and job})
    if not ids:
        out(f"{name}: no queued or running jobs")
        return []
    try:
        proc = subprocess.run(["scancel", *ids], env=_slurm_env(profile), check=False, capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise LaunchError(f"scancel did not answer on cluster '{profile.name}' ({err}); retry later") from None
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or ["no answer"])[-1]
        raise LaunchError(f"scancel failed on cluster '{profile.name}' ({why}); retry, or scancel the jobs by hand")
    (rundir.sweep_dir(runs_root, name) / ".scheduler_cache.json").unlink(missing_ok=True)
    out(f"{name}: cancelled {len(ids)} jobs")
    return ids


class LocalFailures(LaunchError):
    """Some stages of a local sweep failed; the others ran. The message is the one-line summary."""


def _local_order(runs: list[Run], stages: tuple[str, ...], root: Path, sweep: str) -> list[Run]:
    """Runs in sweep order, those with a failed stage record last: a known-bad cell never delays the rest."""
    def failed_before(run: Run) -> bool:
        return any(rundir.result_status(rundir.stage_dir(root, sweep, run.run_id, s)) == "failed" for s in stages)

    return sorted(runs, key=failed_before)  # stable: sweep order within each group


def run_local(sweep: Any, profile: ClusterProfile, runs: list[Run], root: Path,
              out: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Cluster `local`: every stage of every run in this process, one after another, with progress bars.

    Done stages are skipped; an interrupted stage (Ctrl-C) saves at its step boundary and the same command
    resumes it. A failing stage is recorded (its result.json says failed, and why), the run's later stages
    that need it are skipped, and every other run still runs; the sweep then ends with a one-line summary
    (LocalFailures) and a non-zero exit.
    """
    from rich.console import Console

    from jobs.sweep import NEEDS_PRETRAIN
    from mst.train import Interrupted

    console = Console(stderr=True)
    write_run_configs(runs, root, profile.name)
    tasks = [(run, stage) for run in _local_order(runs, sweep.stages, root, sweep.name) for stage in sweep.stages]
    records = []
    done = failed = skipped = 0
    failures: list[str] = []
    broken: set[str] = set()  # runs whose pre-training failed in this pass
    for i, (run, stage) in enumerate(tasks, 1):
        folder = rundir.stage_dir(root, sweep.name, run.run_id, stage)
        if rundir.result_status(folder) == "done":
            out(f"[{i}/{len(tasks)}] {stage} {run.run_id} ({_cell(run)}): done already")
            done += 1
            continue
        if stage in NEEDS_PRETRAIN and run.run_id in broken:
            out(f"[{i}/{len(tasks)}] {stage} {run.run_id}: skipped (its pretrain failed)")
            skipped += 1
            continue
        console.rule(f"[{i}/{len(tasks)}] {stage} {run.run_id} ({_cell(run)})")
        record = {"run_id": run.run_id, "stage": stage, "job_id": f"local-{os.getpid()}",
                  "cluster": profile.name, "dependency": None, "repeat": run.spec.repeat, "cell": run.spec.cell}
        rundir.append_manifest(root, sweep.name, [record])
        records.append(record)
        job = make_stage_job(run, stage, profile, root)
        job.show_progress = True
        try:
            result = job()
        except Interrupted:
            raise
        except Exception as err:  # noqa: BLE001 - any failure of one stage is recorded, the sweep goes on
            result = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
        if result.get("status") != "done":
            why = str(result.get("error") or "no error message").splitlines()[0][:200]
            out(f"[{i}/{len(tasks)}] {stage} {run.run_id} ({_cell(run)}): failed: {why}")
            failures.append(f"{stage} {run.run_id}: {why}")
            failed += 1
            if stage == "pretrain":
                broken.add(run.run_id)
            continue
        done += 1
        metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in (result.get("metrics") or {}).items())
        out(f"[{i}/{len(tasks)}] {stage} {run.run_id}: {result.get('status')} {metrics}")
    summary = f"sweep {sweep.name}: {done} of {len(tasks)} stages done, {failed} failed, {skipped} skipped"
    if failed:
        raise LocalFailures(f"{summary} (first: {failures[0]}); each failed stage's result.json says why; fix "
                            "it and run the same command again (done stages are kept)")
    out(summary)
    return records
