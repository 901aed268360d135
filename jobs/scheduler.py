"""Everything that talks to Slurm or reaches into submitit's internals, in one place.

sbatch goes through submitit's SlurmExecutor (with retries when slurmctld is busy), with the parameters of
`slurm_parameters`, the one mapping of a profile onto submitit's; squeue/sacct answers are read with
submitit's parser, one call per sweep (jobs.states caches it a minute); scancel and sinfo are called directly. `slurm_conf_of` scopes SLURM_CONF to the profile's cluster. On the job side,
`requeue_at_step_boundary` takes submitit's own checkpoint-and-requeue path from ordinary code.

submitit's private API used here (and nowhere else): `submitit.slurm.slurm._make_sbatch_string` (the
script submitit would submit), `SlurmInfoWatcher.read_info` (its sacct/squeue parser), the
`submitit.core._submit` entry point, and `SignalHandler` with its `_start_time`.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jobs.errors import LaunchError
from jobs.profiles import ClusterProfile, ProfileError, refuse_unsafe
from jobs.shellsafe import shell_value

# how often a transient sbatch failure (slurmctld busy) is retried, and the first back-off
SBATCH_TRIES, SBATCH_BACKOFF_S = 3, 2.0


def slurm_env(profile: ClusterProfile) -> dict[str, str]:
    """This process's environment with SLURM_CONF pointing at the profile's cluster."""
    env = dict(os.environ)
    if profile.slurm_conf:
        env["SLURM_CONF"] = profile.slurm_conf
    return env


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


def check_cluster(profile: ClusterProfile) -> None:
    """Fail in one line when this machine cannot submit to the profile's cluster."""
    for tool in ("sbatch", "srun", "scontrol"):
        if shutil.which(tool) is None:
            raise LaunchError(f"{tool} not found: cluster '{profile.name}' is not reachable from this machine; "
                              "submit from one of its login nodes, or preview with --dry-run")
    if profile.slurm_conf and not Path(profile.slurm_conf).is_file():
        raise LaunchError(f"cluster '{profile.name}': {profile.slurm_conf} does not exist; start the local "
                          "clusters with `sudo bash clusters/local-slurm/start.sh` or fix slurm_conf")
    env = slurm_env(profile)
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

    env = slurm_env(profile)
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
    body = [ln for ln in lines[1:] if ln.strip()]
    bad = [ln for ln in body if "|" not in ln]
    if bad or (body and not info):
        first = (bad or body)[0]
        raise LaunchError(f"cannot read {cmd[0]}'s answer from cluster '{profile.name}' (line {first[:60]!r}); "
                          f"check that `{cmd[0]}` works on this machine, then retry")
    # "CANCELLED by 0" -> "CANCELLED"
    return {job: (fields.get("State") or "UNKNOWN").split()[0] for job, fields in info.items()}


def scancel(profile: ClusterProfile, job_ids: list[str]) -> None:
    """Cancel these jobs in one scancel call."""
    try:
        proc = subprocess.run(["scancel", *job_ids], env=slurm_env(profile), check=False, capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise LaunchError(f"scancel did not answer on cluster '{profile.name}' ({err}); retry later") from None
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or ["no answer"])[-1]
        raise LaunchError(f"scancel failed on cluster '{profile.name}' ({why}); retry, or scancel the jobs by hand")


# ------------------------------------------------------------------------------------------- sbatch


def setup_lines(profile: ClusterProfile) -> list[str]:
    """Shell lines of the sbatch script before srun: site setup, then the profile's variables."""
    refuse_unsafe(profile, profile.name)  # load_profile refused these; a hand-built profile must not slip by
    lines = list(profile.environment.setup)  # shell lines by design (module loads); one line each
    lines.append(f"export MST_SCRATCH={shell_value(profile.storage.scratch)}")
    # submitit's job side reads the preemption signal from this variable
    lines.append(f"export SUBMITIT_PREEMPT_SIGNAL={shlex.quote(profile.preemption.signal)}")
    if profile.slurm_conf:
        # the job's own scontrol/sacct calls (requeue) must reach the same cluster
        lines.append(f"export SLURM_CONF={shlex.quote(profile.slurm_conf)}")
    lines += [f"export {key}={shell_value(value)}" for key, value in profile.environment.env.items()]
    return lines


def slurm_parameters(profile: ClusterProfile, stage: str, job_name: str, dependency: str | None = None
                     ) -> dict[str, Any]:
    """The submitit SlurmExecutor parameters of a `stage` job on this profile (the only mapping there is),
    with its sbatch --dependency when it has one.

    Devices go through `gres` (raw string) or `gpus_per_node`, never both: submitit's gpus_per_node means
    gres `gpu`, which DCU nodes do not have.
    """
    if profile.scheduler != "slurm":
        raise ProfileError(f"profile {profile.name} has scheduler {profile.scheduler}; it submits nothing")
    shape = profile.shape(stage)
    pre = profile.preemption
    params: dict[str, Any] = {
        "job_name": job_name,
        "partition": profile.placement.partition,
        "nodes": shape.nodes,
        "ntasks_per_node": shape.tasks_per_node,
        "cpus_per_task": shape.cpus_per_task,
        "time": shape.time_min,
        "mem": "0" if shape.mem_gb == 0 else f"{int(shape.mem_gb * 1024)}M",  # 0: all of the node's memory
        "signal_delay_s": pre.delay_s,
        "setup": setup_lines(profile),
        "stderr_to_stdout": True,
        "array_parallelism": profile.limits.array_parallelism,
        # a dependency that can no longer be met cancels the job instead of leaving it pending forever
        "additional_parameters": {"signal": f"{pre.signal}@{pre.delay_s}", "kill-on-invalid-dep": "yes"},
    }
    if pre.requeue:  # every stage job checkpoints and requeues itself (jobs.stage_job.StageJob)
        params["additional_parameters"]["requeue"] = True
    for key in ("account", "qos", "constraint"):
        value = getattr(profile.placement, key)
        if value:
            params[key] = value
    if shape.exclusive:
        params["exclusive"] = True
    acc = profile.accelerators
    if acc.request == "gres":
        params["gres"] = profile.gres(stage)
    elif acc.request == "gpus_per_node":
        params["gpus_per_node"] = shape.tasks_per_node
    if dependency:
        params["dependency"] = dependency
    return params


def submitit_command(python: str, folder: Path) -> str:
    """The command submitit puts in every sbatch script (as SlurmExecutor builds it)."""
    return " ".join([python, "-u -m submitit.core._submit", shlex.quote(str(folder))])


def dependency_of(submitted: list[list[str]] | None, array: Any) -> str | None:
    """The --dependency of `array` (a jobs.plan.Array), given the job ids of the arrays submitted before it (plan order); on a dry
    run (`submitted` None: no job id exists yet) the aligned array's number stands in for its id."""
    if array.waits_for is not None:
        return f"afterok:{array.waits_for}"  # a job id or an array task id ('123_4'): Slurm takes both
    if array.after is None:
        return None
    if submitted is None:
        return f"aftercorr:<job id of array {array.after + 1}>"
    ids = submitted[array.after]
    if len(ids) == 1 and "_" not in ids[0]:
        return f"afterok:{ids[0]}"  # a single run is a plain job, not an array
    return f"aftercorr:{ids[0].split('_')[0]}"


def render_sbatch(profile: ClusterProfile, stage: str, job_name: str, folder: Path, n_tasks: int,
                  dependency: str | None = None) -> str:
    """The sbatch script submitit writes for this array (submitit's own renderer, no submission)."""
    from submitit.slurm.slurm import _make_sbatch_string

    command = submitit_command(python_word(profile), folder)
    params = slurm_parameters(profile, stage, job_name, dependency)
    return _make_sbatch_string(command=command, folder=folder, map_count=n_tasks if n_tasks > 1 else None, **params)


def python_word(profile: ClusterProfile) -> str:
    """The interpreter word of the job's command line, shell-quoted (the profile's, else this one)."""
    return shlex.quote(profile.environment.python or sys.executable)


def sbatch_refused(what: str, text: str) -> LaunchError:
    """sbatch's refusal of `what` as one line: its last line naming an error (else its last line), then
    where to look. Used for the sweep's arrays and the preflight job alike."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    why = next((ln for ln in reversed(lines) if "error" in ln.lower()), lines[-1] if lines else "")
    return LaunchError(f"sbatch refused {what} ({why}); check the profile's partition and resources "
                       "(sinfo, scontrol show partition)")


def submit_array(profile: ClusterProfile, folder: Path, stage: str, name: str, dependency: str | None,
                 fns: list[Any]) -> list[str]:
    """sbatch one array of `fns` (one task each) with the profile's parameters; returns the job ids.
    Retried with back-off when sbatch times out under load."""
    import submitit
    from submitit.core.utils import FailedJobError

    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=profile.preemption.max_requeues,
                                      python=python_word(profile))
    executor.update_parameters(**slurm_parameters(profile, stage, name, dependency))

    delay = SBATCH_BACKOFF_S
    for attempt in range(SBATCH_TRIES):
        try:
            return [job.job_id for job in executor.submit_array(fns)]
        except FailedJobError as err:
            text = str(err)
            transient = any(s in text for s in ("timed out", "Socket timed out", "try again", "busy"))
            if not transient or attempt == SBATCH_TRIES - 1:
                raise sbatch_refused(f"the {len(fns)}-task array", text)
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


# ------------------------------------------------------------------------------------------- job side


def requeue_at_step_boundary(signum: int, started: float) -> None:
    """submitit's own requeue path, taken from ordinary code once the method saved: `checkpoint()` of the
    job's callable is dumped as its pickle, `scontrol requeue` runs and the process exits. Timeouts count
    against the executor's max_num_timeout from the job's real start. Call on rank 0 only."""
    import submitit
    from submitit.core.job_environment import SignalHandler
    from submitit.core.utils import DelayedSubmission

    env = submitit.JobEnvironment()
    delayed = DelayedSubmission.load(env.paths.submitted_pickle)
    handler = SignalHandler(env, env.paths, delayed)
    handler._start_time = started  # timeout accounting from the job's real start
    handler.checkpoint_and_try_requeue(signum)  # checkpoint() -> requeue -> sys.exit
