"""The `table:` block of a sweep file: the appendix table the sweep fills, typed, and whether it fits the sweep.

`read_table` turns the block into a `TableSpec` (which sweep cell and which metric fill each cell, and the
paper's numbers); `fit_table` checks it against a sweep's cells and stages. `load_sweep` calls both, so
`mst-sweep submit` refuses a bad table in one line before anything is submitted; the report (analysis/) reads
the same spec. Torch-free and pandas-free. A block:

    table:
      id: A10
      title: "Section A10: the restoration loss weight"
      paper_scale: "DeiT-S, ImageNet, 100 epochs"   # the paper's setting: named in the title at paper scale only
      row_header: [Restore weight]
      x_axis: loss.restore_weight                 # optional: plots use this axis as x
      pairwise: false                             # optional: with --test, test every pair of rows too
      columns:                                    # key: header and metric sources (stage/metric), first run wins
        top1: {label: Linear (%), sources: [linear_cls/top1_best, knn/top1@10]}
      rows:                                       # in the table's order
        - {label: "0.2", cell: {loss.restore_weight: 0.2}, paper: {top1: 73.7}, paper_se: {top1: 0.2236}, ref: 2}

A row's `cell` names every swept key ({rank: i}: the i-th smallest value of that axis), `paper` the paper's
value per column (percent), `paper_se` the appendix's standard error of it where the appendix gives one,
`note` a footnote on the row's paper value (where it is not the number of the same configuration), `ref` the
row it is tested against, `sources` (optional) its own metric sources
per column. Paper values are the appendix's DeiT-S ImageNet top-1 accuracies; our metrics are read in percent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobs.sweep_file import cell_key, cell_label, drop_blank
from mst.config import codec
from mst.config.codec import DecodeError
from mst.stages import get_stage


class TableError(ValueError):
    """A table block that is malformed or does not fit the sweep it reads (one line)."""


@dataclass(frozen=True)
class Rank:
    """A cell value given by position: the i-th smallest value of that axis in the sweep (`{rank: i}`).

    Used where a budget scales an axis (e.g. 2 vs 6 epochs for the paper's 100 vs 300)."""

    index: int
    """0 = the smallest value of the axis."""


@dataclass(frozen=True)
class Column:
    """A value column of the table (rendered as ours, paper, delta)."""

    key: str
    """Identifier used in Row.sources and Row.paper."""
    label: str
    """Header text, e.g. 'Linear (%)'."""


@dataclass(frozen=True)
class Row:
    """One row: which cell of the sweep, and which (stage, metric) fills each column."""

    label: tuple[str, ...]
    """One text per row-header column; '{dotted.key}' is replaced by the cell's value."""
    cell: dict[str, Any]
    """Axis values selecting the sweep cell (the whole cell: every swept key); Rank(i) by position."""
    sources: dict[str, tuple[tuple[str, str], ...]]
    """Column key -> (stage, metric) alternatives; the first whose stage the sweep runs is used."""
    paper: dict[str, float] = field(default_factory=dict)
    """Column key -> the paper's value (percent)."""
    ref: int | None = None
    """Index of the row this one is tested against (None: this row is a reference)."""
    paper_se: dict[str, float] = field(default_factory=dict)
    """Column key -> the appendix's standard error of the paper's value (percent), where it gives one."""
    note: str | None = None
    """A footnote on this row's paper value (e.g. reached only after re-tuning), marked beside the value."""


@dataclass(frozen=True)
class TableSpec:
    """An appendix table."""

    id: str
    """Table id (A1, A2, ...); a sweep file may name another file's table by it (`table: A10`)."""
    title: str
    """Caption (the appendix's wording)."""
    row_header: tuple[str, ...]
    """Headers of the row-label columns."""
    columns: tuple[Column, ...]
    """Value columns."""
    rows: tuple[Row, ...]
    """Rows in the appendix's order."""
    x_axis: str | None = None
    """Plots: the axis whose numeric value is the x coordinate (None: rows are categories)."""
    pairwise: bool = False
    """With --test, also test every pair of rows against each other (footnotes), not only rows vs their ref."""
    paper_scale: str = ""
    """The paper's setting of these numbers (e.g. 'DeiT-S, ImageNet, 100 epochs'): the title names it only over
    runs at that setting, and the run's own budget otherwise."""


# ------------------------------------------------------------------------- the block as written (codec)


@dataclass(frozen=True)
class ColumnBlock:
    """A column as written under `columns.<key>`."""

    label: str
    """Header text."""
    sources: tuple[str, ...]
    """Metric sources, `stage/metric`, in order of preference."""


@dataclass(frozen=True)
class RowBlock:
    """A row as written under `rows`."""

    label: Any
    """A text, or one text per row header."""
    cell: dict[str, Any] = field(default_factory=dict)
    """Swept key -> value, or {rank: i}."""
    paper: dict[str, float] = field(default_factory=dict)
    """Column key -> the paper's value (percent)."""
    ref: int | None = None
    """Index of the row it is tested against."""
    paper_se: dict[str, float] = field(default_factory=dict)
    """Column key -> the appendix's standard error of the paper's value (percent)."""
    note: str | None = None
    """A footnote on the row's paper value."""
    sources: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Column key -> this row's own metric sources."""


@dataclass(frozen=True)
class TableBlock:
    """The `table:` block as written."""

    id: str
    """Table id."""
    title: str
    """Caption."""
    row_header: Any
    """A text, or a list of texts."""
    columns: dict[str, ColumnBlock]
    """Column key -> label and sources."""
    rows: list[Any]
    """The rows (each decoded as a RowBlock, named by its index)."""
    x_axis: str | None = None
    """Plots: the numeric x axis."""
    pairwise: bool = False
    """With --test, test every pair of rows."""
    paper_scale: str = ""
    """The paper's setting of its numbers (named in the title at paper scale only)."""


WORDING = {
    "unknown": "{where}: unknown key '{key}'; {dotted_hint}valid keys: {valid}",
    "missing": "{where}: '{key}' is missing; add {name}: (see docs/ARCHITECTURE.md, Sweeps and tables)",
}


def _bad(where: str, what: str, fix: str) -> None:
    raise TableError(f"{where}: {what}; {fix}")


def _decode(cls: type, data: Any, where: str) -> Any:
    try:
        return codec.decode(cls, drop_blank(data, ("cell", "paper", "paper_se", "sources")), where, WORDING)
    except DecodeError as err:
        raise TableError(str(err)) from None


def _texts(where: str, value: Any) -> tuple[str, ...]:
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        _bad(where, f"must be a text or a list of texts, got {value!r}", 'quote numbers, e.g. "0.2"')
    return tuple(value)


def _sources(where: str, value: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    if not value:
        _bad(where, "must be a non-empty list of stage/metric, got []", "e.g. [linear_cls/top1_best]")
    for item in value:
        if item.count("/") != 1 or not all(item.split("/")):
            _bad(where, f"source {item!r} is not stage/metric", "e.g. knn/top1@10")
    return tuple(tuple(item.split("/")) for item in value)


def _cell_value(where: str, value: Any) -> Any:
    if isinstance(value, dict):
        if list(value) != ["rank"]:
            _bad(where, f"a mapping value must be {{rank: i}}, got {value!r}", "e.g. {rank: 0} (the axis' smallest)")
        rank = value["rank"]
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
            _bad(where, f"rank must be an integer >= 0, got {rank!r}", "0 is the axis' smallest value")
        return Rank(rank)
    if isinstance(value, list):
        return [_cell_value(where, v) for v in value]
    return value


def read_table(data: Any, where: str) -> TableSpec:
    """The TableSpec of a sweep file's `table:` block; a malformed block is one TableError line at `where`."""
    block = _decode(TableBlock, data, where)
    for key in ("id", "title"):
        if not getattr(block, key):
            _bad(where, f"'{key}' must be a text", f'quote it, e.g. {key}: "..."')
    header = _texts(f"{where}.row_header", block.row_header)
    if not block.columns:
        _bad(where, "'columns' must be a mapping key -> {label, sources}", "e.g. columns: {top1: {label: ...}}")
    columns = tuple(Column(key, col.label) for key, col in block.columns.items())
    defaults = {key: _sources(f"{where}.columns.{key}.sources", col.sources) for key, col in block.columns.items()}
    if not block.rows:
        _bad(where, "'rows' must be a non-empty list", "list the rows in the table's order")
    rows = []
    for i, data_row in enumerate(block.rows):
        at = f"{where}.rows[{i}]"
        row = _decode(RowBlock, data_row, at)
        label = _texts(f"{at}.label", row.label)
        if len(label) != len(header):
            _bad(at, f"label has {len(label)} texts for {len(header)} row headers", "give one text per header")
        for name, given in (("sources", row.sources), ("paper", row.paper), ("paper_se", row.paper_se)):
            for key in given:
                if key not in defaults:
                    _bad(at, f"{name} names column '{key}', which the table lacks", f"use one of {', '.join(defaults)}")
        for key, se in row.paper_se.items():
            if key not in row.paper:
                _bad(at, f"paper_se names column '{key}', which has no paper value in this row",
                     "give the paper's value under paper: too, or drop the s.e.")
            if isinstance(se, bool) or not isinstance(se, (int, float)) or not se > 0:
                _bad(f"{at}.paper_se.{key}", f"must be a positive number, got {se!r}", "e.g. 0.2236 (appendix §1)")
        if row.ref is not None and not (0 <= row.ref < len(block.rows) and row.ref != i):
            _bad(at, f"ref {row.ref!r} is not another row's index", f"give 0 .. {len(block.rows) - 1} (0 is the first row)")
        sources = {key: _sources(f"{at}.sources.{key}", row.sources[key]) if key in row.sources else defaults[key]
                   for key in defaults}
        rows.append(Row(label, {k: _cell_value(f"{at}.cell.{k}", v) for k, v in row.cell.items()}, sources,
                        dict(row.paper), row.ref, dict(row.paper_se), row.note))
    return TableSpec(block.id, block.title, header, columns, tuple(rows), block.x_axis, block.pairwise,
                     block.paper_scale)


# ------------------------------------------------------------------------- the table against its sweep


def resolve_cell(row: Row, cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Replace Rank(i) by the i-th smallest value of that axis among the sweep's cells."""
    resolved = {}
    for key, value in row.cell.items():
        if isinstance(value, Rank):
            levels = sorted({c[key] for c in cells if key in c})
            if value.index >= len(levels):
                raise TableError(f"row {' '.join(row.label)}: the sweep has {len(levels)} values of '{key}', "
                                 f"the table needs {value.index + 1}; add values to the sweep's axis")
            value = levels[value.index]
        resolved[key] = value
    return resolved


def match_rows(spec: TableSpec, sweep: Any) -> list[dict[str, Any]]:
    """The cell of `sweep` (a jobs.sweep.Sweep) of every row (raises TableError when a row has none, or cells
    stay unused)."""
    cells = sweep.cells()
    by_key = {cell_key(c): c for c in cells}
    matched = []
    for row in spec.rows:
        want = resolve_cell(row, cells)
        cell = by_key.get(cell_key(want))
        if cell is None:
            raise TableError(f"table {spec.id} row '{' '.join(row.label)}' needs cell {cell_label(want)}, which "
                             f"sweep {sweep.name} does not define; make the sweep's axes match the table")
        matched.append(cell)
    unused = [c for c in cells if not any(c is m for m in matched)]
    if unused:
        raise TableError(f"sweep {sweep.name} cell {cell_label(unused[0])} has no row in table {spec.id}; "
                         f"remove it from the sweep or add a row")
    return matched


def pick_source(spec: TableSpec, row: Row, column: str, sweep: Any) -> tuple[str, str]:
    """The (stage, metric) of `row` in `column`: the first source whose stage `sweep` runs."""
    for stage, metric in row.sources[column]:
        if stage in sweep.stages:
            return stage, metric
    need = " or ".join(s for s, _ in row.sources[column])
    raise TableError(f"table {spec.id} column '{column}' needs stage {need}, which sweep {sweep.name} does not "
                     f"run; add it to the sweep's stages")


def fit_table(spec: TableSpec, sweep: Any) -> None:
    """Raise TableError unless every row has its cell in `sweep`, every cell a row, every column a stage, and
    every source a metric its stage reports (mst.stages, with the sweep's k-NN k values)."""
    match_rows(spec, sweep)
    ks = sorted({k for cfg in sweep.configs.values() for k in cfg.eval.knn_ks})
    for row in spec.rows:
        for column in spec.columns:
            stage, metric = pick_source(spec, row, column.key, sweep)
            reported = get_stage(stage).metric_names(ks)
            if metric not in reported:
                raise TableError(f"table {spec.id} column '{column.key}': stage {stage} reports no metric "
                                 f"'{metric}'; choose one of {', '.join(reported)}")
