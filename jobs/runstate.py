"""The one vocabulary for the state of a (run, stage), shared by `mst-sweep status` and `mst-report status`.

A stage's `result.json` says done, failed, running (the job started) or preempted (the job saved at a step
boundary and waits to be requeued). `mst-sweep` adds what only the scheduler knows; `mst-report` never asks
the scheduler and reads the records and the manifest only. Both print the words below, with these meanings.
Torch-free (the standard library and the typed record): `analysis/` imports this without torch.
"""

from __future__ import annotations

from collections.abc import Iterable

from mst.run.record import STATUSES

STATES: dict[str, str] = {
    "done": "finished; result.json says done",
    "running": "the job is running",
    "preempted": "the job started, was stopped (preemption, time limit, requeue) and waits to resume from its checkpoint",
    "queued": "submitted, waiting in the scheduler, never started",
    "failed": "ended without a done record (result.json or the scheduler says why)",
    "cancelled": "cancelled in the scheduler",
    "lost": "submitted, but the scheduler no longer knows the job",
    "missing": "never submitted",
    "unknown": "not finished, and the scheduler was not asked",
}
"""State -> what it means, in the order the reports list them."""

RECORD_STATUSES = STATUSES
"""What a result.json's `status` may say (the typed record's own list)."""

FINAL = ("done", "failed")
"""Record statuses that end a stage: the scheduler is not asked about them."""

WITHOUT_SCHEDULER = ("done", "running", "preempted", "queued", "failed", "missing")
"""The states a view from the records and the manifest alone tells apart (`mst-report status`), in order."""

IN_FLIGHT = ("queued", "running", "preempted")
"""States whose job is still in the scheduler: a submission skips them, a downstream stage waits for them."""

LOCAL_JOB = "local"
"""Prefix of the job id a stage run in-process (cluster `local`) records in the manifest: 'local-<pid>'."""

# scheduler states of a job that is still alive (sacct/squeue words)
ACTIVE = ("PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "COMPLETING", "CONFIGURING",
          "SUSPENDED", "RESIZING", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD")
# accounting learns of new jobs a moment after sbatch returns
ACCOUNTING_LAG_S = 300.0


def from_record(marker: str | None, submitted: bool, local: bool = False) -> str:
    """The state seen without the scheduler (`mst-report status`): the record, else queued or missing; a
    `local` (in-process) submission without a record never started: failed, as `sweep_view` says."""
    if marker in RECORD_STATUSES:
        return marker
    if submitted and local:
        return "failed"
    return "queued" if submitted else "missing"


def classify(marker: str | None, sched: str | None, job_id: str | None, age_s: float = 1e9) -> tuple[str, str]:
    """(state, detail) from the stage's record status and the scheduler's state of its latest job."""
    if marker in FINAL:
        return marker, "" if marker == "done" else "result.json says failed"
    if job_id is None:
        return "missing", "never submitted"
    started = marker in ("running", "preempted")
    if sched is None:
        if age_s < ACCOUNTING_LAG_S:
            return ("preempted" if marker == "preempted" else "queued"), "submitted, not in accounting yet"
        return "lost", "the scheduler does not know the job"
    if sched == "PENDING" or sched.startswith("REQUEUE"):
        # a job that wrote a record before and waits again was stopped and requeued
        return ("preempted" if started else "queued"), sched
    if sched in ACTIVE:
        return "running", sched
    if sched.startswith("CANCELLED"):
        return "cancelled", sched
    if sched == "COMPLETED":
        # completed without a done marker: the job ended but the stage did not finish
        return "failed", "COMPLETED without a done result.json"
    return "failed", sched


def is_local_job(job_id: str | None) -> bool:
    """A stage run in-process (no scheduler knows it)."""
    return job_id is not None and job_id.startswith(LOCAL_JOB)


def sweep_view(marker: str | None, job_id: str | None, sched: str | None, age_s: float = 1e9,
               asked: bool = True) -> tuple[str, str]:
    """(state, detail) of one (run, stage) as `mst-sweep status` sees it: the record, the latest submission's
    job id and, when the scheduler was `asked`, its state of that job (None: it did not name the job)."""
    if is_local_job(job_id) and marker not in FINAL:
        # an in-process stage writes 'running' when it starts: a submission without a record never started
        return marker or "failed", "local run"
    state, detail = classify(marker, sched, job_id, age_s)
    if not asked and state in ("lost", "failed") and job_id is not None and marker is None:
        return "unknown", "scheduler not asked"
    return state, detail


def count_by_stage(pairs: Iterable[tuple[str, str]], stages: Iterable[str],
                   words: Iterable[str] = tuple(STATES)) -> dict[str, dict[str, int]]:
    """Stage -> state -> how many runs, every word present and in the vocabulary's order (both reports)."""
    counts = {stage: dict.fromkeys(words, 0) for stage in stages}
    for stage, state in pairs:
        counts[stage][state] += 1
    return counts
