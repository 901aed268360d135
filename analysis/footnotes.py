"""The lines under a built table: statistics, the paper's values and their noise, the sweep's budget, the
metric sources and the probe's recipe, the tests, and the runs that are missing, failed or stale."""

from __future__ import annotations

from typing import Any

from jobs.sweep import Sweep, cell_label
from jobs.sweep_table import pick_source
from mst.stages import STAGES

from .collect import Records
from .scale import Scale
from .stats import DDOF, SE_FORMULA, format_p, summarize
from .tables import TableSpec, source_name

LIST_LIMIT = 8  # names listed per footnote line before "and N more"
NOISE = "\u2020"
"""The mark of a Δ within 2 combined standard errors of the paper's value."""
NOTE_MARKS = ("*", "**", "***", "****")
"""Marks of the rows' notes on their paper values, in row order."""
PAPER_SE_SOURCE = ("\u00a71: linear probing, 0.2236 at 100 epochs, 0.1581 at 300; none "
                   "for k-NN")
LINEAR_STAGES = tuple(name for name, spec in STAGES.items() if spec.command == "linear")
"""The linear-probe stages, whose footnote gives the probe's recipe."""


def names(items: list[str]) -> str:
    shown = "; ".join(items[:LIST_LIMIT])
    return shown + (f"; and {len(items) - LIST_LIMIT} more" if len(items) > LIST_LIMIT else "")


def note_marks(spec: TableSpec) -> dict[int, str]:
    """Row index -> the mark beside its paper value, for rows with a note."""
    noted = [i for i, row in enumerate(spec.rows) if row.note]
    return {i: NOTE_MARKS[min(j, len(NOTE_MARKS) - 1)] for j, i in enumerate(noted)}


def paper_notes(spec: TableSpec, scale: Scale, comparable: dict[str, bool], labels: dict[str, str]) -> list[str]:
    """What the paper column holds, whether a Δ is taken, and the rows' notes on their paper values."""
    out = []
    if any(comparable.values()):
        out.append(f"paper: the appendix's DeiT-S ImageNet top-1 (%), \u00b1 its standard error where the appendix "
                   f"gives one ({PAPER_SE_SOURCE}); \u0394 = ours \u2212 paper; {NOISE}: |\u0394| within 2 combined "
                   f"standard errors (\u221a(s.e.\u00b2 + paper s.e.\u00b2)), within noise.")
        for key, ok in comparable.items():
            if not ok:
                out.append(f"{labels[key]}: a stand-in for the paper's metric, so its paper value is for reference "
                           f"only and no \u0394 is taken.")
    else:
        out.append(f"paper (ImageNet, not comparable): the appendix's DeiT-S ImageNet top-1 (%), \u00b1 its standard "
                   f"error where the appendix gives one ({PAPER_SE_SOURCE}), for reference only: these runs are "
                   f"at {scale.words}, another data set and budget, so no \u0394 against the paper is taken.")
    marks = note_marks(spec)
    for i, mark in marks.items():
        out.append(f"{mark} {' '.join(spec.rows[i].label)}: {spec.rows[i].note}.")
    return out


def recipe_note(stages: list[str], configs: list[Any]) -> list[str]:
    """The linear probe's recipe and lr, and which epoch the linear columns show, when a linear stage is used."""
    if not any(stage in LINEAR_STAGES for stage in stages):
        return []
    from mst.config.recipes import linear_probe_lr

    recipes = sorted({(linear_probe_lr(c.eval), c.eval.linear_recipe, c.eval.linear_momentum,
                       c.eval.linear_weight_decay, c.eval.linear_batch_size, c.eval.linear_epochs,
                       c.eval.linear_cached_features) for c in configs})
    said = "; ".join(f"SGD, lr {lr:g} (recipe {recipe}), momentum {m:g}, weight decay {wd:g}, batch {batch}, "
                     f"{epochs} epochs{', on cached features' if cached else ''}"
                     for lr, recipe, m, wd, batch, epochs, cached in recipes)
    return [(f"Linear probes: {said}. The linear columns show the last epoch's top-1 (top1_last, the protocol's "
             f"number); the best epoch's (top1_best) picks its epoch on the test split, which flatters the probe.")]


def same_records_note(pairs: list[tuple[str, str, str]]) -> list[str]:
    """One line per (column, row, ref) left untested because both rows read the same records."""
    return [f"{column}: {row} and {ref} read the same records (one evaluation per pre-training), so they are "
            f"not tested against each other." for column, row, ref in pairs]


def pairwise_notes(spec: TableSpec, labels: list[tuple[str, ...]], built: list[dict[str, Any]],
                   headers: dict[str, str], compare: Any) -> list[str]:
    """One line per (column, pair of rows): the mean per-seed difference with its s.e., t, df and p."""
    notes = []
    for column in spec.columns:
        for i in range(len(labels)):
            for j in range(i + 1, len(labels)):
                a, b = built[j][column.key], built[i][column.key]
                if a.reads_same_records(b):
                    continue
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
                notes.append(f"{headers[column.key]}: {pair} = {shift}; {result.kind} t({result.df:g}) = "
                             f"{result.t:.2f}, {format_p(result.p)}.")
    return notes


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))  # a run missing in two columns is named once


def footnotes(spec: TableSpec, sweep: Sweep, records: Records, test: bool, expected_ids: set[str],
              problems: dict[str, list[str]], head: list[str], used: dict[str, dict], labels: dict[str, str]
              ) -> list[str]:
    """The table's footnotes; `head` (the paper's and the probe's notes) follows the statistics line."""
    pairing = "cells decorrelated (own seeds per cell)" if sweep.decorrelate_seeds else \
        "repeat r uses the same seed in every cell (paired)"
    notes = [
        (f"Each value: mean \u00b1 s.e. (n) over seeds; {SE_FORMULA} with s the standard deviation over seeds "
         f"(ddof = {DDOF}); n = finished runs of the {sweep.repeats} per cell; n = 1 gives no s.e. "
         f"(said in the cell); a cell with runs still pending shows done/expected."),
        *head,
        (f"Sweep {sweep.name}: preset {sweep.preset}"
         + (f" with {cell_label(sweep.overrides)}" if sweep.overrides else "")
         + f", {sweep.repeats} repeats, base seed {sweep.base_seed}, {pairing}."
         + (f" {sweep.description}" if sweep.description else "")),
    ]
    for column in spec.columns:
        primary = {row.sources[column.key][0] for row in spec.rows}
        text = ", ".join(source_name(*s) for s in used[column.key])
        if set(used[column.key]) != primary:
            notes.append(f"{column.label} is replaced by {text}: the sweep runs no "
                         f"{' / '.join(sorted({s for s, _ in primary}))} stage.")
        else:
            notes.append(f"{column.label}: {text}.")
    if test:
        notes.append("p-value: two-sided t-test of each row against its reference row (ref): paired over seeds when "
                     "both rows ran the same seeds, Welch's unequal-variance test otherwise.")
    for kind, label in (("missing", "Missing (no record yet)"), ("running", "Running"),
                        ("preempted", "Preempted (will resume from a checkpoint)"), ("failed", "Failed")):
        items = _dedupe(problems[kind])
        if items:
            notes.append(f"{label}: {len(items)} \u2014 {names(items)}.")
    if not any(problems.values()):
        notes.append("Missing or failed runs: none.")
    stale = _stale(records, sweep.name, expected_ids)
    if stale:
        notes.append(f"Ignored {len(stale)} record(s) of runs outside the current sweep definition "
                     f"(an older config?): {names(stale)}.")
    skipped = [f"{s.path} ({s.reason})" for s in records.skipped if f"/{sweep.name}/" in s.path]
    if skipped:
        notes.append(f"Skipped {len(skipped)} unusable record(s): {names(skipped)}.")
    return notes


def _stale(records: Records, sweep: str, expected_ids: set[str]) -> list[str]:
    frame = records.frame
    ids = frame.loc[frame["sweep"] == sweep, "run_id"]
    return sorted(set(ids[~ids.isin(list(expected_ids))]))


def used_sources(spec: TableSpec, sweep: Sweep) -> dict[str, dict]:
    """Column key -> the (stage, metric) sources its rows read in this sweep, in row order (a dict as an ordered
    set)."""
    return {column.key: dict.fromkeys(pick_source(spec, row, column.key, sweep) for row in spec.rows)
            for column in spec.columns}
