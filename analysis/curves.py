"""Learning curves: k-NN against pre-training step, from the pretrain records' `curve` (eval.curve_steps).

For a sweep, one line per cell: at each step the mean ± s.e. (ddof = 1) over the seeds whose record holds that
step. For one run, its own points. Beside them, the random-init and raw-pixel lines of the knn stage's records
(`baselines`, mean over seeds): those are measured on the knn stage's images (data.*_subset), the curve on its
own subset (eval.curve_subset), which the legend says.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .baselines import BASELINES, baseline_values
from .plots import save_png
from .stats import Summary, summarize

DEFAULT_METRIC = "top1@10"


class CurveError(ValueError):
    """A report that cannot be drawn; the message is one line: what is wrong and how to fix it."""


@dataclass(frozen=True)
class Curves:
    """What one figure shows."""

    title: str
    """The sweep or run the curves come from."""
    metric: str
    """The k-NN metric on the y axis (e.g. top1@10)."""
    lines: dict[str, dict[int, Summary]]
    """Cell label (or run) -> step -> summary over seeds."""
    baselines: dict[str, Summary]
    """'random init' / 'raw pixels' -> summary over seeds of the knn stage's baseline (may be empty)."""


def curve_points(record: Any, metric: str) -> dict[int, float] | None:
    """step -> value of `metric` from a pretrain record's `curve`; None when the record holds no usable curve."""
    curve = record.get("curve") if isinstance(record, dict) else None
    if not isinstance(curve, list):
        return None
    points = {}
    for point in curve:
        if not isinstance(point, dict):
            return None
        step, value = point.get("step"), point.get(metric)
        if isinstance(step, bool) or not isinstance(step, int) or isinstance(value, bool) \
                or not isinstance(value, (int, float)) or not math.isfinite(value):
            return None
        points[step] = float(value)
    return points or None


def cell_label(cell: Any) -> str:
    """'loss.restore_weight=0.6, mask.strategy=random' (sorted keys), or 'all runs' for an empty cell."""
    if not isinstance(cell, dict) or not cell:
        return "all runs"
    return ", ".join(f"{k}={cell[k]}" for k in sorted(cell))


def _lines(per_cell: dict[str, list[dict[int, float]]]) -> dict[str, dict[int, Summary]]:
    lines = {}
    for label, runs in per_cell.items():
        steps = sorted({s for points in runs for s in points})
        lines[label] = {s: summarize([p[s] for p in runs if s in p]) for s in steps}
    return lines


def sweep_curves(frame: Any, sweep: str, metric: str = DEFAULT_METRIC) -> Curves:
    """The curves of every cell of `sweep` from the collected records (analysis.collect)."""
    rows = frame[(frame["sweep"] == sweep) & (frame["stage"] == "pretrain") & (frame["status"] == "done")]
    per_cell: dict[str, list[dict[int, float]]] = defaultdict(list)
    run_ids = set()
    for run_id, cell, path in rows[["run_id", "cell", "path"]].itertuples(index=False, name=None):
        points = curve_points(_read(Path(path)), metric)
        if points is not None:
            per_cell[cell_label(cell)].append(points)
            run_ids.add(run_id)
    if not per_cell:
        raise CurveError(f"no finished pre-training of sweep '{sweep}' holds a '{metric}' learning curve; run it "
                         "with eval.curve_steps set (e.g. --set eval.curve_steps=[0,100,200]), or pick --metric "
                         "from eval.knn_ks (top1@10, top5@10, ...)")
    found = baseline_values(frame, sweep, run_ids, "knn", metric)
    baselines = {label: summarize(list(found[label].values())) for label in BASELINES if found.get(label)}
    return Curves(sweep, metric, _lines(per_cell), baselines)


def run_curves(folder: Path, metric: str = DEFAULT_METRIC) -> Curves:
    """The curve of one run: `folder` is its pretrain stage folder, or the run folder holding pretrain/."""
    stage = folder / "pretrain" if (folder / "pretrain" / "result.json").is_file() else folder
    record = _read(stage / "result.json")
    if record is None:
        raise CurveError(f"{stage} holds no readable result.json; pass a pre-training folder (mst-pretrain --out) "
                         "or a run folder holding pretrain/")
    points = curve_points(record, metric)
    if points is None:
        raise CurveError(f"{stage}/result.json holds no '{metric}' learning curve; pre-train with eval.curve_steps "
                         "set (e.g. --set eval.curve_steps=[0,100,200])")
    knn = _read(stage.parent / "knn" / "result.json") or {}
    found = knn.get("baselines") if isinstance(knn.get("baselines"), dict) else {}
    baselines = {label: summarize([float(found[label][metric])]) for label in BASELINES
                 if isinstance(found.get(label), dict) and isinstance(found[label].get(metric), (int, float))}
    return Curves(str(folder), metric, _lines({"this run": [points]}), baselines)


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def curve_figure(curves: Curves) -> Any:
    """The matplotlib Figure: one line per cell with s.e. bars, the baselines as horizontal dotted lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for j, (label, points) in enumerate(curves.lines.items()):
        steps = list(points)
        n = max(s.n for s in points.values())
        ax.errorbar(steps, [points[s].mean for s in steps], yerr=[points[s].se or 0.0 for s in steps],
                    fmt="o-", ms=3, capsize=3, color=f"C{j}", label=f"{label} (mean \u00b1 s.e., n = {n})")
    for j, (label, summary) in enumerate(curves.baselines.items()):
        ax.axhline(summary.mean, ls=":", color=f"C{len(curves.lines) + j}",
                   label=f"{label} (knn stage's images, {summary.n} seed{'s' if summary.n > 1 else ''})")
    ax.set_xlabel("pre-training step")
    ax.set_ylabel(f"k-NN {curves.metric} (%) on eval.curve_subset")
    ax.set_title(f"learning curve: {curves.title}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_curves(curves: Curves, path: Path) -> Path:
    """Draw `curves` to `path` (PNG, written atomically)."""
    return save_png(curve_figure(curves), path)


def curves_text(curves: Curves) -> str:
    """The figure's numbers as a plain table: step, then mean ± s.e. (n) per line, then the baselines."""
    labels = list(curves.lines)
    out = [f"learning curve of {curves.title}: k-NN {curves.metric} (%)", "step\t" + "\t".join(labels)]
    for step in sorted({s for points in curves.lines.values() for s in points}):
        cells = []
        for label in labels:
            s = curves.lines[label].get(step)
            cells.append("" if s is None else f"{s.mean:.1f}" + (f" \u00b1 {s.se:.1f}" if s.se is not None else "")
                         + f" (n={s.n})")
        out.append(f"{step}\t" + "\t".join(cells))
    out += [f"{label} (knn stage's images): {s.mean:.1f} (n={s.n})" for label, s in curves.baselines.items()]
    return "\n".join(out) + "\n"
