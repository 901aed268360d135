"""Where every (run, stage) of a sweep stands: its record (result.json), its latest submission (the manifest)
and, for the ones neither finished nor run here, one scheduler poll per sweep, cached for a minute in the
sweep folder (`<sweep>/.scheduler_cache.json`). The words are jobs.runstate's.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from jobs import rundir
from jobs.profiles import ClusterProfile
from jobs.runstate import FINAL, is_local_job, sweep_view
from jobs.scheduler import poll_scheduler
from mst.atomic import atomic_write_json, read_json
from mst.config.codec import DecodeError, decode, encode

STATUS_CACHE_S = 60.0
CACHE_NAME = ".scheduler_cache.json"


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


@dataclass(frozen=True)
class SchedulerCache:
    """A sweep's last scheduler answer, `<sweep>/.scheduler_cache.json` (this module's own, disposable)."""

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


def stage_states(folder: rundir.SweepFolder, keys: list[tuple[str, str]], profile: ClusterProfile,
                 pooled: set[str] | None = None, force: bool = False, counter: Callable[[], None] | None = None,
                 ask_scheduler: bool = True) -> list[StageState]:
    """The state of every (run_id, stage) of `keys`, in their order: its record (result.json) and its latest
    submission (the manifest), then for the ones neither finished nor run here one (cached) scheduler poll.

    `pooled`: the run ids whose pre-training is the pool's (default: all the sweep does not hold as its own);
    their record and latest job are the pool's, whichever sweep submitted it. `force` asks the scheduler even
    when the cache is fresh; `counter` is called once per real poll.
    """
    if pooled is None:
        pooled = folder.pooled(run_id for run_id, stage in keys if stage == "pretrain")
    latest = rundir.latest_submissions(folder, pooled)
    entries = rundir.SweepFolder(folder.root, rundir.POOL)
    found = []  # (key, record status, job id, seconds since its submission)
    for run_id, stage in keys:
        home = entries if stage == "pretrain" and run_id in pooled else folder
        stage_dir = home.stage(run_id, stage)
        marker = rundir.result_status(stage_dir)
        record = latest.get((run_id, stage))
        age = 1e9
        if record and "time" in record:
            age = time.time() - calendar.timegm(time.strptime(record["time"], "%Y-%m-%dT%H:%M:%SZ"))
        found.append(((run_id, stage), marker, str(record["job_id"]) if record else None, age))
    # the scheduler is asked only about the latest jobs of stages without a final record
    unresolved = [(job, age) for _, marker, job, age in found if marker not in FINAL and job is not None]
    wanted = tuple(sorted({job.split("_")[0] for job, _ in unresolved if not is_local_job(job)}))
    answer: dict[str, str] = {}
    if wanted and ask_scheduler and profile.scheduler == "slurm":
        cache_path = folder.path / CACHE_NAME
        try:  # the cache is this module's own: one it cannot read is replaced by the fresh answer
            # read_json: None for a missing, foreign or irregular file (a FIFO never blocks), which decode refuses
            cache = None if force else decode(SchedulerCache, read_json(cache_path), str(cache_path))
        except DecodeError:
            cache = None
        if cache is not None and cache.answers(profile.name, wanted):
            answer = cache.states
        else:
            answer = poll_scheduler(profile, list(wanted), time.time() - max(age for _, age in unresolved))
            if counter:
                counter()
            fresh = SchedulerCache(version=1, time=time.time(), cluster=profile.name, arrays=wanted, states=answer)
            atomic_write_json(rundir.contained(folder.root, cache_path), encode(fresh))
    out = []
    for (run_id, stage), marker, job_id, age in found:
        sched = task_state(answer, job_id) if job_id else None
        state, detail = sweep_view(marker, job_id, sched, age, asked=ask_scheduler)
        out.append(StageState(run_id, stage, state, job_id, detail))
    return out


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
