"""The `table:` block of a sweep file: the appendix table the sweep fills, typed, and whether it fits the sweep.

`read_table` decodes the block into a `TableSpec` through the shared codec: the classes below are the format
(which sweep cell and which metric fill each cell, and the paper's numbers), their field readers take the
written shorthands and `TableSpec.__post_init__` checks the rows against the table. `fit_table` checks it
against a sweep's cells and stages. `load_sweep` calls both, so `mst-sweep submit` refuses a bad table in one
line before anything is submitted; the report (analysis/) reads the same spec. Torch-free and pandas-free:

    table:
      id: A10
      title: "Section A10: the restoration loss weight"
      paper_scale: "DeiT-S, ImageNet, 100 epochs"   # the paper's setting: named in the title at paper scale only
      row_header: [Restore weight]
      x_axis: loss.restore_weight                 # optional: plots use this axis as x
      pairwise: false                             # optional: with --test, test every pair of rows too
      columns:                                    # key: header and metric sources (stage/metric), first run wins
        top1: {label: Linear (%), sources: [linear_cls/top1_best, knn/top1@10]}
      rows:                                       # in the table's order; the fields are Row's
        - {label: "0.2", cell: {loss.restore_weight: 0.2}, paper: {top1: 73.7}, paper_se: {top1: 0.2236}, ref: 2}

Paper values are the appendix's DeiT-S ImageNet top-1 accuracies; our metrics are read in percent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from jobs.sweep_file import BLANK, blank_empty, cell_key, cell_label
from jobs.sweep_file import WORDING as SWEEP_WORDING
from mst.config import codec
from mst.config.codec import DecodeError, WrittenError, written
from mst.stages import get_stage


class TableError(ValueError):
    """A table block that is malformed or does not fit the sweep it reads (one line)."""


@dataclass(frozen=True)
class Rank:
    """A cell value given by position: the i-th smallest value of that axis in the sweep (`{rank: i}`).

    Used where a budget scales an axis (e.g. 2 vs 6 epochs for the paper's 100 vs 300)."""

    index: int
    """0 = the smallest value of the axis."""


# ------------------------------------------------------------------------- readers of the written forms


def _texts(value: Any) -> Any:
    """A text or a non-empty list of texts, as a list."""
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise WrittenError(f'must be a text or a list of texts, got {value!r}; quote numbers, e.g. "0.2"')
    return value


def _sources(value: Any, at: str = "") -> Any:
    """`[stage/metric, ...]` (non-empty) as [[stage, metric], ...]."""
    if not isinstance(value, list):
        return value  # the codec names the type
    if not value:
        raise WrittenError("must be a non-empty list of stage/metric, got []; e.g. [linear_cls/top1_best]", at)
    for item in value:
        if not isinstance(item, str) or item.count("/") != 1 or not all(item.split("/")):
            raise WrittenError(f"source {item!r} is not stage/metric; e.g. knn/top1@10", at)
    return [item.split("/") for item in value]


def _rank(value: Any, at: str) -> Any:
    """A cell value; `{rank: i}` as Rank(i)."""
    if isinstance(value, dict):
        if list(value) != ["rank"]:
            raise WrittenError(f"a mapping value must be {{rank: i}}, got {value!r}; e.g. {{rank: 0}} (the axis' "
                               "smallest)", at)
        rank = value["rank"]
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
            raise WrittenError(f"rank must be an integer >= 0, got {rank!r}; 0 is the axis' smallest value", at)
        return Rank(rank)
    if isinstance(value, list):
        return [_rank(v, at) for v in value]
    return value


def _each(reader: Callable[[Any, str], Any]) -> Callable[[Any], Any]:
    """The reader of a mapping (blank: empty) that reads each value with `reader(value, its key)`."""
    def read(value: Any) -> Any:
        if not isinstance(value, dict):
            return blank_empty(value)  # a value of another type: the codec names its type
        return {key: reader(v, str(key)) for key, v in value.items()}
    return read


def _columns(value: Any) -> Any:
    """`{key: {label, sources}}` as a list of columns that carry their key."""
    if not isinstance(value, dict) or not value:
        raise WrittenError("must be a mapping key -> {label, sources}; e.g. columns: {top1: {label: ...}}")
    for key, column in value.items():
        if not isinstance(key, str):
            raise WrittenError(f"a column key must be a text, got {key!r}; quote it, e.g. \"top1\"")
        if isinstance(column, dict) and "key" in column:
            raise WrittenError(f"a column names its key by where it stands, not by 'key: {column['key']}'; "
                               "remove that line", key)
    return [{"key": key, **column} if isinstance(column, dict) else column for key, column in value.items()]


# ------------------------------------------------------------------------- the table (decoded as written)


@dataclass(frozen=True)
class Column:
    """A value column of the table (rendered as ours, paper, delta), written as `columns.<key>`."""

    NAMED_BY: ClassVar[str] = "key"  # errors name a column columns.<key>, as written, not by its position
    key: str
    """Identifier used in Row.sources and Row.paper (the key it is written under)."""
    label: str
    """Header text, e.g. 'Linear (%)'."""
    sources: tuple[tuple[str, str], ...] = field(metadata=written(_sources))
    """(stage, metric) alternatives, written `[stage/metric, ...]`: the first whose stage the sweep runs is
    used, by every row that gives none of its own."""


@dataclass(frozen=True)
class Row:
    """One row: which cell of the sweep, and which (stage, metric) fills each column."""

    label: tuple[str, ...] = field(metadata=written(_texts))
    """One text per row-header column (a single text for one header); '{dotted.key}' is replaced by the cell's
    value."""
    cell: dict[str, Any] = field(default_factory=dict, metadata=written(_each(_rank)))
    """Axis values selecting the sweep cell (the whole cell: every swept key); Rank(i) by position, written
    `{rank: i}`."""
    sources: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict, metadata=written(_each(_sources)))
    """Column key -> (stage, metric) alternatives, written `[stage/metric, ...]`; the first whose stage the sweep
    runs is used. In a TableSpec every column has an entry (the column's own sources where the row gives none)."""
    paper: dict[str, float] = field(default_factory=dict, metadata=BLANK)
    """Column key -> the paper's value (percent)."""
    ref: int | None = None
    """Index of the row this one is tested against (None: this row is a reference)."""
    paper_se: dict[str, float] = field(default_factory=dict, metadata=BLANK)
    """Column key -> the appendix's standard error of the paper's value (percent), where it gives one."""
    note: str | None = None
    """A footnote on this row's paper value where it is not the number of the same configuration (e.g. reached
    only after re-tuning), marked beside the value."""


@dataclass(frozen=True)
class TableSpec:
    """An appendix table: the `table:` block of a sweep file, decoded by the codec (see `read_table`)."""

    id: str
    """Table id (A1, A2, ...); a sweep file may name another file's table by it (`table: A10`)."""
    title: str
    """Caption (the appendix's wording)."""
    row_header: tuple[str, ...] = field(metadata=written(_texts))
    """Headers of the row-label columns (a single text for one)."""
    columns: tuple[Column, ...] = field(metadata=written(_columns))
    """Value columns, written as a mapping key -> {label, sources} in the table's order."""
    rows: tuple[Row, ...]
    """Rows in the appendix's order (at least one)."""
    x_axis: str | None = None
    """Plots: the axis whose numeric value is the x coordinate (None: rows are categories)."""
    pairwise: bool = False
    """With --test, also test every pair of rows against each other (footnotes), not only rows vs their ref."""
    paper_scale: str = ""
    """The paper's setting of these numbers (e.g. 'DeiT-S, ImageNet, 100 epochs'): the title names it only over
    runs at that setting, and the run's own budget otherwise."""

    def __post_init__(self) -> None:
        for key in ("id", "title"):
            if not getattr(self, key):
                raise WrittenError(f"'{key}' must be a text; quote it, e.g. {key}: \"...\"")
        if not self.rows:
            raise WrittenError("'rows' must be a non-empty list; list the rows in the table's order")
        defaults = {column.key: column.sources for column in self.columns}
        for i, row in enumerate(self.rows):  # each row fits the table: its headers, columns and reference row
            at = f"rows[{i}]"
            if len(row.label) != len(self.row_header):
                raise WrittenError(f"label has {len(row.label)} texts for {len(self.row_header)} row headers; give "
                                   "one text per header", at)
            for name in ("sources", "paper", "paper_se"):
                for key in getattr(row, name):
                    if key not in defaults:
                        raise WrittenError(f"{name} names column '{key}', which the table lacks; use one of "
                                           f"{', '.join(defaults)}", at)
            for key, se in row.paper_se.items():
                if key not in row.paper:
                    raise WrittenError(f"paper_se names column '{key}', which has no paper value in this row; give "
                                       "the paper's value under paper: too, or drop the s.e.", at)
                if not se > 0:
                    raise WrittenError(f"must be a positive number, got {se!r}; e.g. 0.2236 (appendix §1)",
                                       f"{at}.paper_se.{key}")
            if row.ref is not None and not (0 <= row.ref < len(self.rows) and row.ref != i):
                raise WrittenError(f"ref {row.ref!r} is not another row's index; give 0 .. {len(self.rows) - 1} (0 "
                                   "is the first row)", at)
        # a row reads its columns' sources where it gives none of its own
        object.__setattr__(self, "rows", tuple(
            dataclasses.replace(row, sources={key: row.sources.get(key, own) for key, own in defaults.items()})
            for row in self.rows))


WORDING = {
    **SWEEP_WORDING,  # a table is written inside a sweep file (or beside it) and words an unknown key alike
    "missing": "{where}: '{key}' is missing; add {name}: (see docs/ARCHITECTURE.md, Sweeps and tables)",
    "written": "{where}.{key}: {problem}",  # as the file's own path reads: table.rows[0].label
}


def read_table(data: Any, where: str) -> TableSpec:
    """The TableSpec of a sweep file's `table:` block; a malformed block is one TableError line at `where`."""
    try:
        return codec.decode(TableSpec, data, where, WORDING)
    except DecodeError as err:
        raise TableError(str(err)) from None


# ------------------------------------------------------------------------- the table against its sweep


def match_rows(spec: TableSpec, sweep: Any) -> list[dict[str, Any]]:
    """The cell of `sweep` (a jobs.sweep.Sweep) of every row (raises TableError when a row has none, or cells
    stay unused)."""
    cells = sweep.cells()
    by_key = {cell_key(c): c for c in cells}
    matched = []
    for row in spec.rows:
        want = dict(row.cell)
        for key, value in row.cell.items():  # Rank(i): the i-th smallest value of that axis among the sweep's cells
            if isinstance(value, Rank):
                levels = sorted({c[key] for c in cells if key in c})
                if value.index >= len(levels):
                    raise TableError(f"row {' '.join(row.label)}: the sweep has {len(levels)} values of '{key}', "
                                     f"the table needs {value.index + 1}; add values to the sweep's axis")
                want[key] = levels[value.index]
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
