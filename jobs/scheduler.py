"""Everything that talks to Slurm or reaches into submitit's internals, in one place.

sbatch goes through submitit's SlurmExecutor (with retries when slurmctld is busy); squeue/sacct answers are
read with submitit's parser, one call per sweep, cached for a minute in the sweep folder; scancel and sinfo
are called directly. `slurm_conf_of` scopes SLURM_CONF to the profile's cluster. On the job side,
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from jobs import rundir
from jobs.errors import LaunchError
from jobs.profiles import ClusterProfile, slurm_parameters
from mst.atomic import atomic_write_json, read_json
from mst.config.codec import DecodeError, decode, encode

STATUS_CACHE_S = 60.0
# how often a transient sbatch failure (slurmctld busy) is retried, and the first back-off
SBATCH_TRIES, SBATCH_BACKOFF_S = 3, 2.0
CACHE_NAME = ".scheduler_cache.json"


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


@dataclass(frozen=True)
class SchedulerCache:
    """A sweep's last scheduler answer, `<sweep>/.scheduler_cache.json` (launcher-owned, disposable)."""

    version: Literal[1]
    """The file's schema: one of another version is not read, and the fresh answer replaces it."""
    time: float
    """When the scheduler answered (epoch seconds)."""
    cluster: str
    """The cluster profile that was asked."""
    arrays: tuple[str, ...]
    """The array ids asked about, sorted."""
    states: dict[str, str]
    """Job or array task id ('123_4') -> the scheduler's state word."""

    def answers(self, cluster: str, wanted: tuple[str, ...]) -> bool:
        """Younger than STATUS_CACHE_S, from `cluster`, and about every array of `wanted`."""
        fresh = 0 <= time.time() - self.time < STATUS_CACHE_S
        return fresh and self.cluster == cluster and set(wanted) <= set(self.arrays)


def cached_poll(profile: ClusterProfile, folder: rundir.SweepFolder, array_ids: list[str], force: bool = False,
                counter: Callable[[], None] | None = None, since: float | None = None) -> dict[str, str]:
    """poll_scheduler, reusing the sweep's cached answer when it is younger than a minute."""
    path = folder.path / CACHE_NAME
    wanted = tuple(sorted(set(array_ids)))
    if not force:
        try:  # the cache is this module's own: one it cannot read is replaced by the fresh answer
            # read_json: None for a missing, foreign or irregular file (a FIFO never blocks), which decode refuses
            cache = decode(SchedulerCache, read_json(path), str(path))
        except DecodeError:
            cache = None
        if cache is not None and cache.answers(profile.name, wanted):
            return cache.states
    states = poll_scheduler(profile, list(wanted), since)
    if counter:
        counter()
    fresh = SchedulerCache(version=1, time=time.time(), cluster=profile.name, arrays=wanted, states=states)
    atomic_write_json(rundir.contained(folder.root, path), encode(fresh))
    return states


def task_state(states: dict[str, str], job_id: str) -> str | None:
    """The scheduler's state of one job or array task ('123_4'), None when the answer does not name it.

    sacct reports an array cancelled before Slurm split it into tasks under the bare array id ('123'), not
    per task: such a task inherits the array's state.
    """
    if job_id in states:
        return states[job_id]
    return states.get(job_id.split("_")[0]) if "_" in job_id else None


def clear_cache(folder: rundir.SweepFolder) -> None:
    """Forget the cached scheduler answer (after a change the cache cannot know of, e.g. scancel)."""
    (folder.path / CACHE_NAME).unlink(missing_ok=True)


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


def submitit_command(python: str, folder: Path) -> str:
    """The command submitit puts in every sbatch script (as SlurmExecutor builds it)."""
    return " ".join([python, "-u -m submitit.core._submit", shlex.quote(str(folder))])


def render_sbatch(profile: ClusterProfile, stage: str, job_name: str, folder: Path, n_tasks: int,
                  dependency: str | None = None) -> str:
    """The sbatch script submitit writes for this array (submitit's own renderer, no submission)."""
    from submitit.slurm.slurm import _make_sbatch_string

    command = submitit_command(python_word(profile), folder)
    params = slurm_parameters(profile, stage, job_name)
    if dependency:
        params["dependency"] = dependency
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
    params = slurm_parameters(profile, stage, name)
    if dependency:
        params["dependency"] = dependency
    executor.update_parameters(**params)

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
