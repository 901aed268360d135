"""Fill a table spec from a sweep's expected runs and the collected records.

The sweep's expansion says which runs should exist (run id per cell and repeat); the records say what
happened. A cell shows a number once none of its runs is pending, otherwise progress `done/expected`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from jobs.sweep import RunSpec, Sweep, cell_key, cell_label
from jobs.sweep_table import match_rows, pick_source

from .baselines import NOTE, baseline_cells, delta_init
from .collect import Records
from .stats import DDOF, SE_FORMULA, Summary, TTest, compare, summarize
from .tables import Row, TableError, TableSpec, source_name

__all__ = ["TableError", "build_table", "match_rows", "pick_source", "table_frame"]
LIST_LIMIT = 8  # names listed per footnote line before "and N more"


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

    @property
    def final(self) -> bool:
        """True when the cell shows a number: no run pending and at least one finished."""
        return self.pending == 0 and self.summary is not None

    @property
    def delta(self) -> float | None:
        if not self.final or self.paper is None:
            return None
        return self.summary.mean - self.paper


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

    def delta_init(self, key: str, cell: CellResult) -> float | None:
        """ours − random init for column `key` (None without a random-init baseline or a final value)."""
        init = self.baselines.get("random init", {}).get(key)
        return delta_init(cell.summary.mean if cell.final else None, init)


def _names(items: list[str]) -> str:
    shown = "; ".join(items[:LIST_LIMIT])
    return shown + (f"; and {len(items) - LIST_LIMIT} more" if len(items) > LIST_LIMIT else "")


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

    missing, running, preempted, failed = [], [], [], []
    used_stages = set()
    built_cells: list[dict[str, CellResult]] = []
    for row, cell in zip(spec.rows, cells):
        runs = runs_by_cell[cell_key(cell)]
        out = {}
        for column in spec.columns:
            stage, metric = pick_source(spec, row, column.key, sweep)
            used_stages.add(stage)
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
                                         values)
        built_cells.append(out)

    rows = []
    for i, (row, cell) in enumerate(zip(spec.rows, cells)):
        tests: dict[str, TTest | None] = {}
        if test and row.ref is not None:
            for column in spec.columns:
                mine, ref = built_cells[i][column.key], built_cells[row.ref][column.key]
                tests[column.key] = compare(mine.values, ref.values) if mine.final and ref.final else None
        is_ref = any(other.ref == i for other in spec.rows)
        rows.append(BuiltRow(_label(row, cell), built_cells[i], tests, is_ref))

    notes = _footnotes(spec, sweep, records, cells, test, sorted(used_stages), expected_ids,
                       {"missing": missing, "running": running, "preempted": preempted, "failed": failed})
    scale = "" if sweep.preset == "paper" else f" [{sweep.preset} scale]"
    title = f"{spec.title} \u2014 sweep {sweep.name}{scale}"
    labels = {}
    for column in spec.columns:
        used = {pick_source(spec, row, column.key, sweep) for row in spec.rows}
        primary = {row.sources[column.key][0] for row in spec.rows}
        stand_in = sorted(used - primary)
        labels[column.key] = column.label if not stand_in else \
            f"{'k-NN' if stand_in[0][0] == 'knn' else stand_in[0][0]} (%) in place of {column.label}"
    if test and spec.pairwise:
        notes += _pairwise_notes(spec, [row.label for row in rows], built_cells, labels)
    # the baselines of a column come from the metric source of its first row
    sources = {column.key: pick_source(spec, spec.rows[0], column.key, sweep) for column in spec.columns}
    baselines = baseline_cells(records.frame, sweep.name, expected_ids, sources, sweep.repeats, CellResult)
    if baselines:
        used = "; ".join(f"{labels[key]}: {source_name(*source)}" for key, source in sources.items())
        notes.insert(2, NOTE.format(sources=f"from {used}"))
    return BuiltTable(spec, sweep.name, title, tuple(rows), tuple(notes), test, labels, baselines)


def _pairwise_notes(spec: TableSpec, labels: list[tuple[str, ...]], built: list[dict[str, CellResult]],
                    headers: dict[str, str]) -> list[str]:
    """One line per (column, pair of rows): the mean per-seed difference with its s.e., t, df and p."""
    notes = []
    for column in spec.columns:
        for i in range(len(labels)):
            for j in range(i + 1, len(labels)):
                a, b = built[j][column.key], built[i][column.key]
                result = compare(a.values, b.values) if a.final and b.final else None
                if result is None:
                    continue
                pair = f"{' '.join(labels[j])} \u2212 {' '.join(labels[i])}"
                if result.kind == "paired":
                    seeds = sorted(a.values)
                    diff = summarize([a.values[s] - b.values[s] for s in seeds])
                    shift = f"{diff.mean:+.2f} \u00b1 {diff.se:.2f} points over {diff.n} paired seeds"
                else:
                    shift = f"{a.summary.mean - b.summary.mean:+.2f} points (unpaired)"
                notes.append(f"{headers[column.key]}: {pair} = {shift}; {result.kind} t({result.df:g}) = {result.t:.2f}, "
                             f"p = {result.p:.3g}.")
    return notes


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))  # a run missing in two columns is named once


def _footnotes(spec: TableSpec, sweep: Sweep, records: Records, cells: list[dict], test: bool,
               stages: list[str], expected_ids: set[str], problems: dict[str, list[str]]) -> list[str]:
    pairing = "cells decorrelated (own seeds per cell)" if sweep.decorrelate_seeds else \
        "repeat r uses the same seed in every cell (paired)"
    notes = [
        (f"Each value: mean \u00b1 s.e. (n) over seeds; {SE_FORMULA} with s the standard deviation over seeds "
         f"(ddof = {DDOF}); n = finished runs of the {sweep.repeats} per cell; n = 1 gives no s.e. "
         f"(said in the cell); a cell with runs still pending shows done/expected."),
        "paper: the appendix's DeiT-S ImageNet top-1 (%); \u0394 = ours \u2212 paper.",
        (f"Sweep {sweep.name}: preset {sweep.preset}"
         + (f" with {cell_label(sweep.overrides)}" if sweep.overrides else "")
         + f", {sweep.repeats} repeats, base seed {sweep.base_seed}, {pairing}."
         + (f" {sweep.description}" if sweep.description else "")),
    ]
    for column in spec.columns:
        used = {pick_source(spec, row, column.key, sweep) for row in spec.rows}
        primary = {row.sources[column.key][0] for row in spec.rows}
        text = ", ".join(source_name(*s) for s in sorted(used))
        if used != primary:
            text = (f"{column.label} is replaced by {text}: the sweep runs no "
                    f"{' / '.join(sorted({s for s, _ in primary}))} stage, so the paper's linear-probe values "
                    f"are compared with this stand-in")
        notes.append(f"{column.label}: {text}." if used == primary else f"{text}.")
    if test:
        notes.append("p-value: two-sided t-test of each row against its reference row (ref): paired over seeds when "
                     "both rows ran the same seeds, Welch's unequal-variance test otherwise.")
    for kind, label in (("missing", "Missing (no record yet)"), ("running", "Running"),
                        ("preempted", "Preempted (will resume from a checkpoint)"), ("failed", "Failed")):
        items = _dedupe(problems[kind])
        if items:
            notes.append(f"{label}: {len(items)} \u2014 {_names(items)}.")
    if not any(problems.values()):
        notes.append("Missing or failed runs: none.")
    stale = _stale(records, sweep.name, expected_ids)
    if stale:
        notes.append(f"Ignored {len(stale)} record(s) of runs outside the current sweep definition "
                     f"(an older config?): {_names(stale)}.")
    skipped = [f"{s.path} ({s.reason})" for s in records.skipped if f"/{sweep.name}/" in s.path]
    if skipped:
        notes.append(f"Skipped {len(skipped)} unusable record(s): {_names(skipped)}.")
    return notes


def _stale(records: Records, sweep: str, expected_ids: set[str]) -> list[str]:
    frame = records.frame
    ids = frame.loc[frame["sweep"] == sweep, "run_id"]
    return sorted(set(ids[~ids.isin(list(expected_ids))]))


def table_frame(table: BuiltTable) -> pd.DataFrame:
    """Long form of a built table (one row per row x column) for CSV and plots."""
    out = []
    extra = [((label,) + ("",) * (len(table.spec.row_header) - 1), cells, {})
             for label, cells in table.baselines.items()]
    for label, cells, tests in [(row.label, row.cells, row.tests) for row in table.rows] + extra:
        for column in table.spec.columns:
            c = cells[column.key]
            t = tests.get(column.key)
            out.append({
                "table": table.spec.id, "sweep": table.sweep,
                **{h: v for h, v in zip(table.spec.row_header, label)},
                "column": table.labels[column.key], "mean": c.summary.mean if c.final else None,
                "se": c.summary.se if c.final else None, "n": c.summary.n if c.summary else c.done,
                "non_finite": c.summary.non_finite if c.summary else 0, "expected": c.expected,
                "pending": c.pending, "failed": c.failed, "paper": c.paper, "delta": c.delta,
                **({"delta_init": table.delta_init(column.key, c)} if table.baselines else {}),
                "test": t.kind if t else None, "p_value": t.p if t else None,
            })
    return pd.DataFrame(out)
