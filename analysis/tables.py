"""The appendix tables the report fills: every table a sweep file lays out, the table of a sweep, and the
footnote wording of each metric source.

The `table:` block's types and its reader (`TableSpec`, `Row`, `Column`, `Rank`, `read_table`) live beside the
sweep-file format in jobs/sweep_table.py, so `mst-sweep submit` refuses a bad table before anything runs.
"""

from __future__ import annotations

from typing import Any

from jobs.sweep_table import (  # noqa: F401  (re-exported: the names the report and its tests import from here)
    Column,
    Rank,
    Row,
    TableError,
    TableSpec,
    read_table,
)
from mst.stages import STAGES

# how a metric reads in a footnote, after its stage's description (mst.stages)
METRIC_WORDS = {"top1_best": "best epoch", "top5_best": "top-5, best epoch", "top1_last": "last epoch",
                "top5_last": "top-5, last epoch"}


def source_name(stage: str, metric: str) -> str:
    """A (stage, metric) source in words, e.g. 'linear probe on the last class token (linear_cls, best epoch)'."""
    if stage == "knn" and "@" in metric:
        kind, k = metric.split("@", 1)
        return f"weighted k-NN {'top-1' if kind == 'top1' else 'top-5'} at k = {k} (knn)"
    spec, words = STAGES.get(stage), METRIC_WORDS.get(metric)
    if spec is None or words is None:
        return f"{stage} {metric}"
    return f"{spec.description} ({stage}, {words})"


def table_specs() -> dict[str, TableSpec]:
    """Every table laid out by a sweep file in sweeps/, by id."""
    from jobs.sweep import SweepError, load_sweep, sweep_names

    specs = {}
    for name in sweep_names():
        try:
            sweep = load_sweep(name)
        except SweepError as err:
            raise TableError(str(err)) from None
        if isinstance(sweep.table, dict):
            spec = read_table(sweep.table, f"{sweep.path}: table")
            specs[spec.id] = spec
    return specs


def table_sweeps() -> dict[str, str]:
    """Table id -> the name of the sweep file that lays it out (and fills it). Reads only each file's `table:`
    id: a full load would check every cell's config of every sweep."""
    from jobs.config_io import read_yaml
    from jobs.sweep import SWEEP_DIR, sweep_names

    out = {}
    for name in sweep_names():
        table = read_yaml(SWEEP_DIR / f"{name}.yaml", "sweep").get("table")
        if isinstance(table, dict) and isinstance(table.get("id"), str):
            out[table["id"]] = name
    return out


def spec_of(sweep: Any) -> TableSpec:
    """The table `sweep` (a jobs.sweep.Sweep) fills: its own `table:` block, or the one it names by id."""
    if isinstance(sweep.table, dict):
        return read_table(sweep.table, f"{sweep.path}: table")
    specs = table_specs()
    if sweep.table not in specs:
        raise TableError(f"sweep {sweep.name} names table '{sweep.table}', which no sweep file lays out; use one "
                         f"of {', '.join(specs)}, or lay the table out under table:")
    return specs[sweep.table]
