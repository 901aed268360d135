"""Progress of a sweep: per stage, how many runs are done / running / preempted / queued / failed / missing.

Expected runs come from the sweep's expansion; states from the `result.json` records; `queued` means the
launcher's manifest lists a submission but the job has not written a record yet (still waiting in Slurm).
The words and their meanings are `mst-sweep status`'s (jobs.runstate), without the scheduler's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jobs.rundir import SweepFolder, latest_submissions
from jobs.runstate import WITHOUT_SCHEDULER, count_by_stage, from_record, is_local_job
from jobs.sweep import RunSpec, Sweep

from .collect import Records

STATES = WITHOUT_SCHEDULER


@dataclass(frozen=True)
class SweepStatus:
    sweep: str
    """Sweep name."""
    counts: dict[str, dict[str, int]]
    """Stage -> state -> number of runs."""
    failures: tuple[str, ...]
    """'run_id stage: first line of the error' for every failed stage."""
    stale: int
    """Records of runs that the current sweep definition does not produce."""


def sweep_status(sweep: Sweep, records: Records, runs_root: Path, specs: list[RunSpec] | None = None) -> SweepStatus:
    specs = sweep.expand() if specs is None else specs
    frame = records.frame
    frame = frame[frame["sweep"] == sweep.name]
    state = {(r, s): (st, err) for r, s, st, err in
             frame[["run_id", "stage", "status", "error"]].itertuples(index=False, name=None)}
    submitted = latest_submissions(SweepFolder(Path(runs_root), sweep.name))
    pairs = []
    failures = []
    for run in specs:
        for stage in sweep.stages:
            st, err = state.get((run.run_id, stage), (None, None))
            job = submitted.get((run.run_id, stage))
            st = from_record(st, job is not None, local=is_local_job(str(job.get("job_id", ""))) if job else False)
            if st == "failed":
                failures.append(f"{run.run_id} {stage}: {str(err or 'no error message').splitlines()[0]}")
            pairs.append((stage, st))
    counts = count_by_stage(pairs, sweep.stages, STATES)
    expected = {run.run_id for run in specs}
    stale = int((~frame["run_id"].isin(list(expected))).sum())
    return SweepStatus(sweep.name, counts, tuple(failures), stale)


def to_rich(status: SweepStatus, total: int):
    from rich.table import Table
    from rich.text import Text

    t = Table(title=f"sweep {status.sweep}: {total} runs", title_justify="left")
    t.add_column("stage")
    styles = {"done": "green", "running": "cyan", "failed": "red", "preempted": "magenta", "queued": "blue",
              "missing": "yellow"}
    for state in STATES:
        t.add_column(state, justify="right", style=styles[state])
    for stage, counts in status.counts.items():
        t.add_row(stage, *(str(counts[s]) for s in STATES))
    notes = [f"failed: {f}" for f in status.failures[:10]]
    if len(status.failures) > 10:
        notes.append(f"... and {len(status.failures) - 10} more failures")
    if status.stale:
        notes.append(f"{status.stale} record(s) from runs outside the current sweep definition are ignored")
    if notes:
        from mst.echo import shown

        # Text: error messages may hold brackets that rich reads as markup; shown: or escape sequences
        t.caption = Text("\n".join(shown(n) for n in notes))
        t.caption_justify = "left"
    return t
