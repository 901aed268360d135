"""The appendix tables, read from the `table:` block of each sweep file: which sweep cell and which metric
fills each cell, and the paper's numbers.

Paper values are the appendix's DeiT-S ImageNet top-1 accuracies in percent; our metrics are read in the
same unit (percent). Rows and columns follow the appendix tables (sections 4, 5, 6, 8, 9, 10). A table block:

    table:
      id: A10
      title: "Section A10: the restoration loss weight (DeiT-S, 100 epochs)"
      row_header: [Restore weight]
      x_axis: loss.restore_weight                 # optional: plots use this axis as x
      pairwise: false                             # optional: with --test, test every pair of rows too
      columns:                                    # key: header and metric sources (stage/metric), first run wins
        top1: {label: Linear (%), sources: [linear_cls/top1_best, knn/top1@10]}
      rows:                                       # in the table's order
        - {label: "0.2", cell: {loss.restore_weight: 0.2}, paper: {top1: 73.7}, ref: 2}

A row's `cell` names every swept key ({rank: i}: the i-th smallest value of that axis), `paper` the paper's
value per column, `ref` the row it is tested against, `sources` (optional) its own metric sources per column.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

SOURCE_NAMES = {
    ("linear_cls", "top1_best"): "linear probe on the last class token (linear_cls, best epoch)",
    ("linear_dino", "top1_best"): "DINO's linear probe on the last 4 class tokens (linear_dino, best epoch)",
}


class TableError(ValueError):
    """A table block that is malformed or does not fit the sweep it reads (one line)."""


def source_name(stage: str, metric: str) -> str:
    if stage == "knn" and metric.startswith("top1@"):
        return f"weighted k-NN top-1 at k = {metric.split('@')[1]} (knn)"
    return SOURCE_NAMES.get((stage, metric), f"{stage} {metric}")


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


TABLE_KEYS = ("id", "title", "row_header", "columns", "rows", "x_axis", "pairwise")
COLUMN_KEYS = ("label", "sources")
ROW_KEYS = ("label", "cell", "paper", "ref", "sources")


def _bad(where: str, what: str, fix: str) -> None:
    raise TableError(f"{where}: {what}; {fix}")


def _keys(where: str, data: Any, valid: tuple[str, ...], required: tuple[str, ...]) -> dict:
    if not isinstance(data, dict):
        _bad(where, f"must be a mapping, got {type(data).__name__}", f"write the keys {', '.join(valid)}")
    for key in data:
        if key not in valid:
            near = difflib.get_close_matches(str(key), valid, n=1)
            _bad(where, f"unknown key '{key}'", f"did you mean '{near[0]}'?" if near else f"valid keys: {', '.join(valid)}")
    for key in required:
        if key not in data:
            _bad(where, f"'{key}' is missing", f"add {key}: (see analysis/tables.py)")
    return data


def _texts(where: str, value: Any) -> tuple[str, ...]:
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        _bad(where, f"must be a text or a list of texts, got {value!r}", 'quote numbers, e.g. "0.2"')
    return tuple(value)


def _sources(where: str, value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list) or not value:
        _bad(where, f"must be a non-empty list of stage/metric, got {value!r}", "e.g. [linear_cls/top1_best]")
    out = []
    for item in value:
        if not isinstance(item, str) or item.count("/") != 1 or not all(item.split("/")):
            _bad(where, f"source {item!r} is not stage/metric", "e.g. knn/top1@10")
        out.append(tuple(item.split("/")))
    return tuple(out)


def _cell_value(where: str, value: Any) -> Any:
    if isinstance(value, dict):
        rank = _keys(where, value, ("rank",), ("rank",))["rank"]
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
            _bad(where, f"rank must be an integer >= 0, got {rank!r}", "0 is the axis' smallest value")
        return Rank(rank)
    if isinstance(value, list):
        return [_cell_value(where, v) for v in value]
    return value


def read_table(data: Any, where: str) -> TableSpec:
    """The TableSpec of a sweep file's `table:` block; a malformed block is one TableError line at `where`."""
    data = _keys(where, data, TABLE_KEYS, ("id", "title", "row_header", "columns", "rows"))
    for key in ("id", "title"):
        if not isinstance(data[key], str) or not data[key]:
            _bad(where, f"'{key}' must be a text", f'quote it, e.g. {key}: "..."')
    header = _texts(f"{where}.row_header", data["row_header"])
    columns, defaults = [], {}
    if not isinstance(data["columns"], dict) or not data["columns"]:
        _bad(where, "'columns' must be a mapping key -> {label, sources}", "e.g. columns: {top1: {label: ...}}")
    for key, col in data["columns"].items():
        col = _keys(f"{where}.columns.{key}", col, COLUMN_KEYS, COLUMN_KEYS)
        columns.append(Column(str(key), _texts(f"{where}.columns.{key}.label", col["label"])[0]))
        defaults[str(key)] = _sources(f"{where}.columns.{key}.sources", col["sources"])
    rows_data = data["rows"]
    if not isinstance(rows_data, list) or not rows_data:
        _bad(where, "'rows' must be a non-empty list", "list the rows in the table's order")
    rows = []
    for i, row in enumerate(rows_data):
        at = f"{where}.rows[{i}]"
        row = _keys(at, row, ROW_KEYS, ("label",))
        label = _texts(f"{at}.label", row["label"])
        if len(label) != len(header):
            _bad(at, f"label has {len(label)} texts for {len(header)} row headers", "give one text per header")
        cell = row.get("cell") or {}
        if not isinstance(cell, dict):
            _bad(at, "'cell' must be a mapping of swept keys", "e.g. cell: {loss.restore_weight: 0.2}")
        own = row.get("sources") or {}
        paper = row.get("paper") or {}
        for name, block in (("sources", own), ("paper", paper)):
            if not isinstance(block, dict):
                _bad(at, f"'{name}' must be a mapping column -> value", f"e.g. {name}: {{{columns[0].key}: ...}}")
            for key in block:
                if key not in defaults:
                    _bad(at, f"{name} names column '{key}', which the table lacks", f"use one of {', '.join(defaults)}")
        for key, value in paper.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                _bad(at, f"paper value of '{key}' must be a number, got {value!r}", "write it in percent")
        ref = row.get("ref")
        if ref is not None and (isinstance(ref, bool) or not isinstance(ref, int) or not 0 <= ref < len(rows_data)
                                or ref == i):
            _bad(at, f"ref {ref!r} is not another row's index", f"give 0 .. {len(rows_data) - 1} (0 is the first row)")
        sources = {key: _sources(f"{at}.sources.{key}", own[key]) if key in own else defaults[key] for key in defaults}
        rows.append(Row(label, {k: _cell_value(f"{at}.cell.{k}", v) for k, v in cell.items()}, sources,
                        {k: float(v) for k, v in paper.items()}, ref))
    x_axis, pairwise = data.get("x_axis"), data.get("pairwise", False)
    if x_axis is not None and not isinstance(x_axis, str):
        _bad(where, f"'x_axis' must be a swept key or a row header, got {x_axis!r}", "e.g. x_axis: train.epochs")
    if not isinstance(pairwise, bool):
        _bad(where, f"'pairwise' must be true or false, got {pairwise!r}", "e.g. pairwise: true")
    return TableSpec(data["id"], data["title"], header, tuple(columns), tuple(rows), x_axis, pairwise)


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
