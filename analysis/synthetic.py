"""Synthetic schema-1 records of a sweep's runs, for the tests and the report benchmark.

They follow docs/ARCHITECTURE.md's `result.json` exactly, so the report reads them as it reads real runs.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobs.sweep import RunSpec
from mst.config import config_to_dict
from mst.run.record import RunRecord, encode_record
from mst.stages import STAGES

from .collect import COLUMNS, Records

KNN_KS = (10, 20, 100, 200)
"""The k values of the synthetic k-NN records."""

# A plausible value of each metric name of the stage registry, from the run's accuracy in percent and the k of
# a k-NN metric (None elsewhere).
VALUES: dict[str, Callable[[float, Any], float]] = {
    "loss": lambda acc, k: 5.0 - acc / 50, "loss_dino": lambda acc, k: 4.0, "loss_rec": lambda acc, k: 1.0,
    "steps": lambda acc, k: 100, "epochs": lambda acc, k: 1,
    "top1@{k}": lambda acc, k: min(100.0, acc - k / 100), "top5@{k}": lambda acc, k: min(100.0, acc + 5 - k / 100),
    "top1_best": lambda acc, k: acc, "top5_best": lambda acc, k: acc + 5, "top1_last": lambda acc, k: acc - 0.1,
    "top5_last": lambda acc, k: acc + 4.9, "best_epoch": lambda acc, k: 9,
}
LIFT = {"linear_dino": 1.0}  # DINO's probe on the last 4 class tokens scores a point above the cls probe


def stage_metrics(stage: str) -> Callable[[float], dict[str, float]]:
    """accuracy -> the registry's metrics of `stage` (k-NN ones for each of KNN_KS, k by k)."""
    names = STAGES[stage].metrics
    ks = KNN_KS if any("{k}" in name for name in names) else (None,)
    lift = LIFT.get(stage, 0.0)
    return lambda acc: {name.format(k=k): VALUES[name](acc + lift, k) for k in ks for name in names}


METRICS = {name: stage_metrics(name) for name, spec in STAGES.items() if spec.shape == "pretrain" or spec.frozen_probe}
"""Stage -> accuracy -> metrics: the pre-training and the stages that probe its frozen backbone."""


def baseline_field(stage: str, random_init: float, raw_pixels: float) -> dict[str, dict[str, float]]:
    """An eval stage's `baselines` field: its own metric names, for an untrained network and for raw pixels."""
    return {"random init": METRICS[stage](random_init), "raw pixels": METRICS[stage](raw_pixels)}


def record(run: RunSpec, stage: str, status: str = "done", metrics: dict[str, Any] | None = None,
           error: str | None = None, baselines: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """A result.json for one stage of `run` (metrics omitted unless given; baselines when given)."""
    more = {"weights_sha256": None} | ({"baselines": baselines} if baselines is not None else {})
    return encode_record(RunRecord(
        run_id=run.run_id, sweep=run.sweep, cell=run.cell, repeat=run.repeat, seed=run.seed, stage=stage,
        status=status, error=error, metrics=metrics or {}, config_hash=run.run_id.rsplit("-r", 1)[0],
        config=config_to_dict(run.config), git_sha="synthetic", versions={"python": "3", "mst-toolkit": "0.1.0"},
        cluster="synthetic", job_ids=["1_0"], nodes="localhost", wall_time_s=1.0, device_hours=0.0,
        finished_at="2026-11-27T09:00:00Z", more=more))


def write_record(runs_root: Path, rec: dict[str, Any]) -> Path:
    path = Path(runs_root) / rec["sweep"] / rec["run_id"] / rec["stage"] / "result.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))
    return path


def write_sweep_records(runs_root: Path, runs: list[RunSpec], accuracy: Callable[[RunSpec], float] | None = None,
                        seed: int = 0) -> int:
    """Write a `done` record with plausible metrics for every stage of every run; returns the count."""
    rng = random.Random(seed)
    accuracy = accuracy or (lambda run: 70.0 + rng.gauss(0, 0.5))
    count = 0
    for run in runs:
        acc = accuracy(run)
        for stage in run.stages:
            write_record(runs_root, record(run, stage, metrics=METRICS[stage](acc) if stage in METRICS else {}))
            count += 1
    return count


def records_of(recs: list[dict[str, Any]]) -> Records:
    """The Records that analysis.collect builds from these result.json dicts, read in memory (no files)."""
    import pandas as pd

    rows = [{**{key: rec.get(key) for key in COLUMNS}, "path": ""} for rec in recs]
    return Records(pd.DataFrame(rows, columns=COLUMNS), ())
