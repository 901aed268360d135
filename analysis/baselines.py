"""The baseline rows of a table: the same evaluation of an untrained network and of raw pixels.

Eval stages write `"baselines": {"random init": {<metric>: value}, "raw pixels": {<metric>: value}}` into
their result.json, computed once per data budget and seed, with the stage's own metric names. A table whose
records carry them shows one row per baseline under its cells, each column from the metric source of the
column's first row, as mean ± s.e. over the seeds of the sweep's runs.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from mst.eval.baselines_cache import LABELS

from .stats import summarize

BASELINES = LABELS
"""Row labels, in the order shown (the cache entry's, mst/eval/baselines_cache.py); Δ init is taken against the
first."""
NOTE = ("random init: the same architecture at its random initialisation, evaluated by the same stage on the "
        "same data (computed once per data budget and seed); raw pixels: the same evaluation on the images' "
        "pixels, no network. Both: mean \u00b1 s.e. over the seeds of the sweep's runs, {sources}. "
        "\u0394 init = ours \u2212 random init.")


def baseline_values(frame: Any, sweep: str, run_ids: set[str], stage: str, metric: str) -> dict[str, dict[int, float]]:
    """Baseline label -> seed -> value of `stage`'s `metric`, from the done records of the sweep's runs (the
    value is per seed; cells that ran the same seed carry the same one, so they are averaged, not counted)."""
    if "baselines" not in frame.columns:
        return {}
    rows = frame[(frame["sweep"] == sweep) & (frame["stage"] == stage) & (frame["status"] == "done")]
    by_seed: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run_id, seed, baselines in rows[["run_id", "seed", "baselines"]].itertuples(index=False, name=None):
        if run_id not in run_ids or not isinstance(baselines, dict):
            continue
        for label in BASELINES:
            value = (baselines.get(label) or {}).get(metric)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                by_seed[label][int(seed)].append(float(value))
    return {label: {seed: sum(v) / len(v) for seed, v in seeds.items()} for label, seeds in by_seed.items()}


def baseline_cells(frame: Any, sweep: str, run_ids: set[str], sources: dict[str, tuple[str, str]],
                   repeats: int, cell_type: type) -> dict[str, dict[str, Any]]:
    """Baseline label -> column key -> cell (a CellResult); {} when no record carries baselines."""
    per_column = {column: baseline_values(frame, sweep, run_ids, stage, metric)
                  for column, (stage, metric) in sources.items()}  # each source read once, for both labels
    out: dict[str, dict[str, Any]] = {}
    for label in BASELINES:
        cells = {}
        for column, found in per_column.items():
            values = found.get(label, {})
            summary = summarize(list(values.values())) if values else None
            cells[column] = cell_type(summary, len(values), repeats, 0, 0, None, values)
        if any(c.summary is not None for c in cells.values()):
            out[label] = cells
    return out


def delta_init(mean: float | None, init: Any) -> float | None:
    """ours − random init, or None when either is missing or not finite."""
    if mean is None or init is None or not init.final or not math.isfinite(init.summary.mean):
        return None
    return mean - init.summary.mean
