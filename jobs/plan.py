"""Planning a submission, without a scheduler: the runs a cluster will run (the profile's precision and data
root applied), which of their stages to submit given where each stands, the job arrays, their order and
dependencies. Nothing here submits, polls or writes a file.

Dependencies: a downstream stage (k-NN, probes, attention) is a *dependent array aligned task-for-task* with
its pre-training array: task i of both arrays is the same run, and `--dependency=aftercorr:<pretrain array>`
lets task i start once pre-training task i completed successfully. A failed pre-training task cancels only
its own downstream task (`--kill-on-invalid-dep=yes`), never the whole array; a requeued pre-training task
simply keeps its downstream task waiting. Runs whose pre-training is already done get downstream arrays
without a dependency.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from jobs.profiles import ClusterProfile
from jobs.runstate import IN_FLIGHT
from mst.stages import NEEDS_PRETRAIN


@dataclass(frozen=True)
class Run:
    """A run of the sweep as this cluster will run it (profile precision and data root applied)."""

    run_id: str
    """The sweep's run id (`spec.config_hash` + '-r<repeat>'): names the folder."""
    spec: Any
    """The jobs.sweep.RunSpec it comes from; its config_hash is the run's one identity on every cluster."""
    config: Any
    """The resolved mst.config.Config."""
    config_dict: dict | None = None
    """config_to_dict(config), computed once by resolve_runs (it feeds config.yaml and the job's pickle)."""


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


def config_overrides(profile: ClusterProfile, data_name: str) -> dict[str, Any]:
    """Dotted config overrides a profile implies: precision, and the data root of this site."""
    out: dict[str, Any] = {"train.precision": profile.environment.precision}
    if data_name in profile.storage.data_roots:
        out["data.root"] = profile.storage.data_roots[data_name]
    return out


def resolve_runs(sweep: Any, profile: ClusterProfile) -> list[Run]:
    """Expand the sweep and apply what the profile implies (precision, data root), through the config's own
    `apply_overrides` (the one place dotted overrides are applied and checked).

    The run id stays the sweep's (jobs.sweep.RunSpec.run_id), so `mst-report` finds the runs of every
    cluster; config.yaml and result.json hold the config that really ran, and result.json's config_hash is
    the hash the run id carries (`RunSpec.config_hash`): a run has one identity.
    Runs of one cell differ only in their seed, so the overrides are applied and the config dict built once
    per cell (that is what makes a 100-run sweep slow to submit) and the seed is set per run.
    """
    from jobs.sweep import cell_key
    from mst.config import apply_overrides, config_to_dict

    runs = []
    per_cell: dict[str, tuple[Any, dict]] = {}  # cell key -> (its config on this cluster or None: the sweep's, dict)
    for spec in sweep.expand():
        key = cell_key(spec.cell)
        if key not in per_cell:
            # only what the profile changes is applied: a cell whose precision and data root already agree
            # keeps the configs the sweep validated (no second build)
            changes = {k: v for k, v in config_overrides(profile, spec.config.data.name).items()
                       if attrgetter(k)(spec.config) != v}
            cell_cfg = apply_overrides(spec.config, changes) if changes else None
            per_cell[key] = (cell_cfg, config_to_dict(cell_cfg or spec.config))
        cell_cfg, cell_dict = per_cell[key]
        cfg = spec.config if cell_cfg is None else dataclasses.replace(
            cell_cfg, train=dataclasses.replace(cell_cfg.train, seed=spec.seed))
        data = copy.deepcopy(cell_dict)
        data["train"]["seed"] = spec.seed
        runs.append(Run(spec.run_id, spec, cfg, data))
    return runs


# ------------------------------------------------------------------------------------------- arrays


def plan_arrays(todo: dict[str, list[Run]], stages: tuple[str, ...], array_size: int,
                live: dict[str, str] | None = None) -> list[Array]:
    """Job arrays for the (stage -> runs) still to do, in submission order: the pre-training arrays first,
    split at `array_size`, then each stage's.

    A downstream stage reruns for every run whose pre-training is submitted now, in arrays aligned task-for-task
    with the pre-training arrays. `live` maps run id -> job id of a pre-training still in the scheduler
    (queued, running or preempted): a downstream stage of such a run is a one-run job that waits for that job,
    never an unguarded one. The remaining runs must have finished their pre-training: no dependency.
    """
    live = live or {}
    pre = todo.get("pretrain", [])
    pre_ids = {r.run_id for r in pre}
    pre_chunks = [tuple(pre[i:i + array_size]) for i in range(0, len(pre), array_size)]
    arrays = [Array("pretrain", chunk) for chunk in pre_chunks]
    for stage in stages:
        rest = [] if stage == "pretrain" else todo.get(stage, [])  # the pre-training arrays are planned above
        if rest and stage in NEEDS_PRETRAIN:  # aligned with every pre-training submitted now
            arrays += [Array(stage, chunk, after=i) for i, chunk in enumerate(pre_chunks)]
            rest = [r for r in rest if r.run_id not in pre_ids]
            arrays += [Array(stage, (r,), waits_for=live[r.run_id]) for r in rest if r.run_id in live]
            rest = [r for r in rest if r.run_id not in live]
        arrays += [Array(stage, tuple(rest[i:i + array_size])) for i in range(0, len(rest), array_size)]
    return arrays


def arrays_to_submit(sweep: Any, runs: list[Run], states: list[Any], profile: ClusterProfile, pooled: set[str],
                     own: int, planned: dict[str, str] | None, preview_resubmit: bool, out: Callable[[str], None]
                     ) -> list[Array]:
    """The arrays of what is not done nor in flight, given every (run, stage)'s state (jobs.states.StageState),
    saying what is shared with the pool and what is skipped. `pooled`: the run ids whose pre-training is the
    pool's, `own`: how many the sweep holds in its own folders; `planned`: see jobs.launcher.submit;
    `preview_resubmit` (a resubmission's dry run) says why each stage would be resubmitted."""
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
        if preview_resubmit:  # why a stage is resubmitted is the scheduler's answer (cancelled, failed, lost)
            out(f"would resubmit {s.stage} {s.run_id} ({describe(by_id[s.run_id])}): {s.state}"
                + (f", {s.detail}" if s.detail else "") + (f" (job {s.job_id})" if s.job_id else ""))
    if planned is not None:  # a dry run of several sweeps in sequence: an earlier one's new pre-training is shared
        for run in [r for r in todo.get("pretrain", []) if r.run_id in planned and r.run_id in pooled]:
            todo["pretrain"].remove(run)
            live[run.run_id] = planned[run.run_id]
    if pooled or own:
        pre_states = {s.run_id: s.state for s in states if s.stage == "pretrain"}
        out(f"{sweep.name}: " + share_line(sorted(pooled), pre_states, planned, own))
    if planned is not None:
        planned.update({r.run_id: f"<pre-training planned by {sweep.name}>" for r in todo.get("pretrain", [])
                        if r.run_id in pooled})
    if skipped:
        out(f"{sweep.name}: skipping " + ", ".join(f"{n} {k}" for k, n in sorted(skipped.items()))
            + " (run, stage) pairs")
    return plan_arrays(todo, sweep.stages, profile.limits.array_size, live)


def share_line(pooled: list[str], states: dict[str, str], planned: Iterable[str] | None = None, own: int = 0
               ) -> str:
    """'20 pooled pre-trainings, 12 new, 8 shared (...)': how many of the sweep's pooled
    pre-trainings this submission adds to the pool and how many it takes from it. `states`: run id -> its
    pre-training's state; `planned`: run ids an earlier sweep of the same submission plans (None: no such);
    `own`: how many the sweep holds in its own folders (a root made before the pool)."""
    listed = planned is not None
    planned = set(planned or ())
    done = sum(1 for r in pooled if states.get(r) == "done")
    live = sum(1 for r in pooled if states.get(r) in IN_FLIGHT)
    early = sum(1 for r in pooled if r in planned and states.get(r) != "done" and states.get(r) not in IN_FLIGHT)
    shared = done + live + early
    parts = [f"{done} done", f"{live} queued or running"]
    parts += [f"{early} planned by an earlier sweep"] if listed else []
    line = (f"{len(pooled)} pooled pre-trainings, {len(pooled) - shared} new, {shared} shared "
            f"({', '.join(parts)})")
    return line + (f"; {own} in the sweep's own folders (a root made before the pool: `mst-sweep pool` moves "
                   "them into it)" if own else "")


def describe(run: Run) -> str:
    """'loss.restore_weight=0.6, repeat 0': the run's cell and repeat, for progress lines."""
    from jobs.sweep import cell_label

    return f"{cell_label(run.spec.cell)}, repeat {run.spec.repeat}"
