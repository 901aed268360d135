"""Fill a table spec from a sweep's expected runs and the collected records.

The sweep's expansion says which runs should exist (run id per cell and repeat); the records say what
happened. A cell shows a number once none of its runs is pending, otherwise progress `done/expected`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from jobs.sweep import RunSpec, Sweep, cell_key, cell_label
from jobs.sweep_table import match_rows, pick_source

from .baselines import NOTE, baseline_cells, delta_init
from .collect import Records
from .footnotes import (
    footnotes,
    note_marks,
    pairwise_notes,
    paper_notes,
    recipe_note,
    same_records_note,
    used_sources,
)
from .scale import Scale, sweep_scale
from .stats import Summary, TTest, compare, summarize
from .tables import Row, TableError, TableSpec, source_name

__all__ = ["TableError", "build_table", "match_rows", "pick_source", "table_frame"]
NOISE_SES = 2.0
"""A Δ within this many combined standard errors of the paper's value is marked as within noise."""


@dataclass(frozen=True)
class CellResult:
    """One (row, column) of a built table."""

    summary: Summary | None
    """Statistics over the finished runs; None when none finished."""
    done: int
    """Runs with a usable value."""
    expected: int
    """Runs the sweep defines for this cell (its repeats)."""
    pending: int
    """Runs without a final record yet (missing, running or preempted)."""
    failed: int
    """Runs that failed (or finished without the metric)."""
    paper: float | None
    """The paper's value."""
    values: dict[int, float]
    """Seed -> value of the finished runs (for the paired test)."""
    paper_se: float | None = None
    """The appendix's standard error of the paper's value, where it gives one."""
    comparable: bool = False
    """Whether the paper's value measures what this cell measures (the paper's budget, data and metric): only
    then is a Δ taken."""
    source: tuple[str, str] | None = None
    """The (stage, metric) the cell reads."""
    cell: str = ""
    """The sweep cell it reads (jobs.sweep.cell_key)."""

    @property
    def final(self) -> bool:
        """True when the cell shows a number: no run pending and at least one finished."""
        return self.pending == 0 and self.summary is not None

    @property
    def delta(self) -> float | None:
        """ours − paper, only where the paper's value is comparable."""
        if not self.final or self.paper is None or not self.comparable:
            return None
        return self.summary.mean - self.paper

    @property
    def within_noise(self) -> bool | None:
        """Whether |Δ| <= 2 combined standard errors (None without a Δ or without both standard errors)."""
        if self.delta is None or self.summary.se is None or self.paper_se is None:
            return None
        return abs(self.delta) <= NOISE_SES * math.hypot(self.summary.se, self.paper_se)

    def reads_same_records(self, other: CellResult) -> bool:
        """True when both cells read the same metric of the same runs (a test between them is a tautology)."""
        return self.source is not None and (self.source, self.cell) == (other.source, other.cell)


@dataclass(frozen=True)
class BuiltRow:
    label: tuple[str, ...]
    """Row-header texts."""
    cells: dict[str, CellResult]
    """Column key -> cell."""
    tests: dict[str, TTest | None]
    """Column key -> test against the reference row (empty when not requested or a reference row)."""
    is_ref: bool
    """True for a row others are tested against."""
    note_mark: str = ""
    """The mark beside its paper values when the row has a note (footnoted)."""


@dataclass(frozen=True)
class BuiltTable:
    spec: TableSpec
    """The spec it was built from."""
    sweep: str
    """Sweep name."""
    title: str
    """Caption including the sweep and its scale."""
    rows: tuple[BuiltRow, ...]
    """Rows in spec order."""
    footnotes: tuple[str, ...]
    """Lines printed under the table."""
    tested: bool
    """Whether p-values were computed."""
    labels: dict[str, str]
    """Column key -> header text (names the stand-in metric when the sweep lacks the paper's stage)."""
    baselines: dict[str, dict[str, CellResult]] = field(default_factory=dict)
    """Baseline label ('random init', 'raw pixels') -> column key -> cell; empty when no record carries them."""
    scale: Scale = field(default_factory=lambda: Scale(False, "paper", ""))
    """The runs' scale, and whether the paper's numbers are comparable with them."""
    comparable: dict[str, bool] = field(default_factory=dict)
    """Column key -> whether its paper values are comparable (a Δ column is shown)."""
    init_by_source: dict[tuple[str, str], CellResult] = field(default_factory=dict)
    """(stage, metric) -> the random-init baseline of that metric: a row with its own source (A1's k = 20, 100,
    200) is compared with random init at its own metric, not the first row's."""

    def delta_init(self, key: str, cell: CellResult) -> float | None:
        """ours − random init at the cell's own metric (None without a random-init baseline or a final value)."""
        init = self.init_by_source.get(cell.source) or self.baselines.get("random init", {}).get(key)
        return delta_init(cell.summary.mean if cell.final else None, init)


def _label(row: Row, cell: dict[str, Any]) -> tuple[str, ...]:
    out = []
    for text in row.label:
        for key, value in cell.items():
            text = text.replace("{" + key + "}", f"{value:g}" if isinstance(value, float) else str(value))
        out.append(text)
    return tuple(out)


def _index(records: Records, sweep: str) -> dict[tuple[str, str], Any]:
    frame = records.frame
    frame = frame[frame["sweep"] == sweep]
    cols = ["run_id", "stage", "status", "seed", "metrics", "error"]
    return {(r[0], r[1]): r for r in frame[cols].itertuples(index=False, name=None)}


def build_table(spec: TableSpec, sweep: Sweep, records: Records, test: bool = False,
                specs: list[RunSpec] | None = None) -> BuiltTable:
    """Fill `spec` from the records of `sweep`; `specs` is the sweep's expansion (computed when omitted)."""
    specs = sweep.expand() if specs is None else specs
    cells = match_rows(spec, sweep)
    runs_by_cell: dict[str, list[RunSpec]] = defaultdict(list)
    for run in specs:
        runs_by_cell[cell_key(run.cell)].append(run)
    index = _index(records, sweep.name)
    expected_ids = {run.run_id for run in specs}
    configs = [runs[0].config for runs in runs_by_cell.values()]
    scale = sweep_scale(sweep, configs, spec.paper_scale)
    used = used_sources(spec, sweep)
    stand_ins = {column.key: sorted(set(used[column.key]) - {row.sources[column.key][0] for row in spec.rows})
                 for column in spec.columns}
    comparable = {key: scale.comparable and not stand_in for key, stand_in in stand_ins.items()}

    missing, running, preempted, failed = [], [], [], []
    built_cells: list[dict[str, CellResult]] = []
    for row, cell in zip(spec.rows, cells):
        runs = runs_by_cell[cell_key(cell)]
        out = {}
        for column in spec.columns:
            stage, metric = pick_source(spec, row, column.key, sweep)
            values: dict[int, float] = {}
            pending = bad = 0
            for run in runs:
                rec = index.get((run.run_id, stage))
                where = f"{cell_label(cell)} r{run.repeat} ({run.run_id}, {stage})"
                if rec is None:
                    pending += 1
                    missing.append(where)
                elif rec[2] in ("running", "preempted"):
                    pending += 1
                    (running if rec[2] == "running" else preempted).append(where)
                elif rec[2] == "failed" or rec[4].get(metric) is None:
                    bad += 1
                    why = (rec[5] or "no error message") if rec[2] == "failed" else f"done without metric '{metric}'"
                    failed.append(f"{where}: {str(why).splitlines()[0] if str(why) else why}")
                else:
                    values[rec[3]] = float(rec[4][metric])
            summary = summarize(list(values.values())) if values else None
            out[column.key] = CellResult(summary, len(values), len(runs), pending, bad, row.paper.get(column.key),
                                         values, row.paper_se.get(column.key), comparable[column.key],
                                         (stage, metric), cell_key(cell))
        built_cells.append(out)

    labels = {}
    for column in spec.columns:
        stand_in = stand_ins[column.key]
        labels[column.key] = column.label if not stand_in else \
            f"{'k-NN' if stand_in[0][0] == 'knn' else stand_in[0][0]} (%) in place of {column.label}"
    marks = note_marks(spec)
    rows, untested = [], []
    for i, (row, cell) in enumerate(zip(spec.rows, cells)):
        tests: dict[str, TTest | None] = {}
        if test and row.ref is not None:
            for column in spec.columns:
                mine, ref = built_cells[i][column.key], built_cells[row.ref][column.key]
                if mine.reads_same_records(ref):
                    untested.append((labels[column.key], " ".join(_label(row, cell)),
                                     " ".join(_label(spec.rows[row.ref], cells[row.ref]))))
                    tests[column.key] = None
                    continue
                tests[column.key] = compare(mine.values, ref.values) if mine.final and ref.final else None
        is_ref = any(other.ref == i for other in spec.rows)
        rows.append(BuiltRow(_label(row, cell), built_cells[i], tests, is_ref, marks.get(i, "")))

    head = paper_notes(spec, scale, comparable, labels) + \
        recipe_note(sorted({stage for sources in used.values() for stage, _ in sources}), configs)
    notes = footnotes(spec, sweep, records, test, expected_ids,
                      {"missing": missing, "running": running, "preempted": preempted, "failed": failed},
                      head, used, labels)
    if test:
        notes += same_records_note(untested)
    title = f"{spec.title}, at {scale.words} \u2014 sweep {sweep.name}"
    if test and spec.pairwise:
        notes += pairwise_notes(spec, [row.label for row in rows], built_cells, labels, compare)
    # the baselines of a column come from the metric source of its first row
    sources = {column.key: pick_source(spec, spec.rows[0], column.key, sweep) for column in spec.columns}
    baselines = baseline_cells(records.frame, sweep.name, expected_ids, sources, sweep.repeats, CellResult)
    own = sorted({c.source for cells in built_cells for c in cells.values()} - set(sources.values()))
    init_by_source = {}
    if baselines:
        said = "; ".join(f"{labels[key]}: {source_name(*source)}" for key, source in sources.items())
        notes.insert(1 + len(head), NOTE.format(sources=f"from {said}") + (
            " A row with its own metric takes its Δ init against random init at that metric." if own else ""))
        found = baseline_cells(records.frame, sweep.name, expected_ids, {s: s for s in own}, sweep.repeats,
                               CellResult)
        init_by_source = found.get("random init", {})
    return BuiltTable(spec, sweep.name, title, tuple(rows), tuple(notes), test, labels, baselines, scale, comparable,
                      init_by_source)


def table_frame(table: BuiltTable) -> pd.DataFrame:
    """Long form of a built table (one row per row x column) for CSV and plots: the values the table shows, at
    full precision, and empty where the table shows a dash or progress (n only where a mean is shown)."""
    out = []
    n_header = len(table.spec.row_header)
    refs = [table.spec.rows[i].ref for i in range(len(table.rows))]
    rows = [(row.label, row.cells, row.tests, "",
             " ".join(table.rows[ref].label) if ref is not None else ("ref" if row.is_ref else ""))
            for row, ref in zip(table.rows, refs)]
    rows += [((label,) + ("",) * (n_header - 1), cells, {}, label, "") for label, cells in table.baselines.items()]
    first = table.rows[0].cells
    for label, cells, tests, baseline, ref in rows:
        for column in table.spec.columns:
            c = cells[column.key]
            t = tests.get(column.key)
            source = c.source or first[column.key].source
            out.append({
                "table": table.spec.id, "sweep": table.sweep, "budget": table.scale.budget,
                **{h: v for h, v in zip(table.spec.row_header, label)}, "baseline": baseline,
                "column": table.labels[column.key], "metric_source": "/".join(source) if source else None,
                "n": c.summary.n if c.final else None, "mean": c.summary.mean if c.final else None,
                "se": c.summary.se if c.final else None, "done": c.done, "expected": c.expected,
                "pending": c.pending, "failed": c.failed,
                "non_finite": c.summary.non_finite if c.summary else 0,
                "paper": c.paper, "paper_se": c.paper_se,
                "paper_comparable": table.comparable.get(column.key, False) if c.paper is not None else None,
                "delta": c.delta, "within_noise": c.within_noise,
                **({"delta_init": None if baseline == "random init" else table.delta_init(column.key, c)}
                   if table.baselines else {}),
                "ref": ref, "test": t.kind if t else None, "p_value": t.p if t else None,
            })
    frame = pd.DataFrame(out)
    # percentages to 10 decimals: the values as computed, without float noise (59.400000000000006 -> 59.4);
    # p-values as they are (a tiny one must not round to 0)
    floats = frame.select_dtypes("float").columns.drop("p_value", errors="ignore")
    frame[floats] = frame[floats].round(10)
    return frame
