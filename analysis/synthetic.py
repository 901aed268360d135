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

from .collect import COLUMNS, Records

METRICS = {
    "pretrain": lambda acc: {"loss": 5.0 - acc / 50, "loss_dino": 4.0, "loss_rec": 1.0, "steps": 100, "epochs": 1},
    "knn": lambda acc: {f"top{t}@{k}": min(100.0, acc + (5 if t == 5 else 0) - k / 100) for k in (10, 20, 100, 200)
                        for t in (1, 5)},
    "linear_cls": lambda acc: {"top1_best": acc, "top5_best": acc + 5, "top1_last": acc - 0.1,
                               "top5_last": acc + 4.9, "best_epoch": 9},
    "linear_dino": lambda acc: {"top1_best": acc + 1, "top5_best": acc + 6, "top1_last": acc + 0.9,
                                "top5_last": acc + 5.9, "best_epoch": 9},
}


def baseline_field(stage: str, random_init: float, raw_pixels: float) -> dict[str, dict[str, float]]:
    """An eval stage's `baselines` field: its own metric names, for an untrained network and for raw pixels."""
    return {"random init": METRICS[stage](random_init), "raw pixels": METRICS[stage](raw_pixels)}


def record(run: RunSpec, stage: str, status: str = "done", metrics: dict[str, Any] | None = None,
           error: str | None = None, baselines: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """A schema-1 result.json for one stage of `run` (metrics omitted unless given; baselines when given)."""
    return ({"baselines": baselines} if baselines is not None else {}) | {
        "schema": 1, "run_id": run.run_id, "sweep": run.sweep, "cell": run.cell, "repeat": run.repeat,
        "seed": run.seed, "stage": stage, "status": status, "error": error, "metrics": metrics or {},
        "config_hash": run.run_id.rsplit("-r", 1)[0], "config": config_to_dict(run.config), "git_sha": "synthetic",
        "versions": {"python": "3", "mst-toolkit": "0.1.0"}, "cluster": "synthetic", "job_ids": ["1_0"],
        "nodes": "localhost", "wall_time_s": 1.0, "device_hours": 0.0, "weights_sha256": None,
        "finished_at": "2026-11-27T09:00:00Z",
    }


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
