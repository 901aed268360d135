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

SOURCE_NAMES = {
    ("linear_cls", "top1_best"): "linear probe on the last class token (linear_cls, best epoch)",
    ("linear_dino", "top1_best"): "DINO's linear probe on the last 4 class tokens (linear_dino, best epoch)",
}


def source_name(stage: str, metric: str) -> str:
    if stage == "knn" and metric.startswith("top1@"):
        return f"weighted k-NN top-1 at k = {metric.split('@')[1]} (knn)"
    return SOURCE_NAMES.get((stage, metric), f"{stage} {metric}")


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


def spec_of(sweep: Any) -> TableSpec:
    """The table `sweep` (a jobs.sweep.Sweep) fills: its own `table:` block, or the one it names by id."""
    if isinstance(sweep.table, dict):
        return read_table(sweep.table, f"{sweep.path}: table")
    specs = table_specs()
    if sweep.table not in specs:
        raise TableError(f"sweep {sweep.name} names table '{sweep.table}', which no sweep file lays out; use one "
                         f"of {', '.join(specs)}, or lay the table out under table:")
    return specs[sweep.table]
