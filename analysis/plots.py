"""One PNG per sweep: the metric against the swept value (a line over a numeric axis, separate points over
categories), mean with s.e. error bars, the paper's points where they are comparable, and the baselines (random
init, raw pixels) as horizontal lines when the records carry them."""

from __future__ import annotations

import io
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any

from mst.atomic import atomic_write_bytes

from .assemble import BuiltTable

TITLE_SIZE = 9
"""Font size (points) of the figure title."""
PANEL_WIDTH_IN = 5.5
"""Width (inches) of one column's panel (at least)."""
CATEGORY_WIDTH_IN = 1.1
"""Width (inches) given to each category of a categorical panel, so that its tick label fits beside the next."""
TICK_CHARS = 16
"""Characters per line of a category's tick label."""


def _wrap(text: str, width_in: float, size: float) -> str:
    """`text` broken into lines that fit `width_in` inches at `size` points (a glyph averages under 0.6 em)."""
    chars = max(20, int(width_in * 72 / (0.6 * size)) - 4)  # 4 characters of margin for the figure's edges
    return "\n".join(textwrap.wrap(text, chars))


def _numeric(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _tick_label(headers: tuple[str, ...], label: tuple[str, ...]) -> str:
    """A category's tick: one 'header: value' line per row header, each wrapped to TICK_CHARS."""
    parts = [f"{h}: {v}" if len(label) > 1 else v for h, v in zip(headers, label)]
    return "\n".join(line for part in parts for line in textwrap.wrap(part, TICK_CHARS))


def _series(table: BuiltTable, key: str, numeric: bool) -> dict[str, list[tuple[float, Any]]]:
    """Name -> [(x, cell)] of one panel; a series that reads the same records as an earlier one at every x (A3's
    k-NN: one k-NN per pre-training, whichever probe the row names) is drawn once, under both names."""
    series: dict[str, list[tuple[float, Any]]] = defaultdict(list)
    for i, row in enumerate(table.rows):
        if numeric:
            series[" ".join(row.label[:-1]) or "ours"].append((float(row.label[-1]), row.cells[key]))
        else:
            series["ours"].append((float(i), row.cells[key]))
    kept: dict[str, list[tuple[float, Any]]] = {}
    for name, points in series.items():
        same = next((other for other, mine in kept.items() if len(mine) == len(points) and all(
            xa == xb and a.reads_same_records(b) for (xa, a), (xb, b) in zip(mine, points))), None)
        if same is None:
            kept[name] = points
        else:
            kept[f"{same} = {name} (same runs)"] = kept.pop(same)
    return kept


def table_figure(table: BuiltTable) -> Any:
    """The matplotlib Figure of `table`: one panel per column, its y axis named by the metric the table used
    (the stand-in when the sweep lacks the paper's stage) and the runs' scale, the title wrapped to the
    figure's width. Numeric axes (k, loss weight, epochs) join their points; categories stand alone. The
    paper's points are drawn only where they are comparable (the paper's budget and data)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = table.spec.columns
    numeric = table.spec.x_axis is not None and all(_numeric(r.label[-1]) is not None for r in table.rows)
    width = PANEL_WIDTH_IN if numeric else max(PANEL_WIDTH_IN, CATEGORY_WIDTH_IN * len(table.rows))
    fig, axes = plt.subplots(1, len(columns), figsize=(width * len(columns), 4 if numeric else 5), squeeze=False)
    style = "o-" if numeric else "o"
    for ax, column in zip(axes[0], columns):
        series = _series(table, column.key, numeric)
        comparable = table.comparable.get(column.key, False)
        for j, (name, points) in enumerate(series.items()):
            color = f"C{j}"
            done = [(x, c) for x, c in points if c.final]
            if done:
                ax.errorbar([x for x, _ in done], [c.summary.mean for _, c in done],
                            yerr=[c.summary.se or 0.0 for _, c in done], fmt=style, color=color, capsize=4,
                            label=f"{name} (mean \u00b1 s.e.)" if numeric else "ours (mean \u00b1 s.e.)")
            known = [(x, c) for x, c in points if c.paper is not None]
            if known and comparable:
                ax.errorbar([x for x, _ in known], [c.paper for _, c in known],
                            yerr=[c.paper_se or 0.0 for _, c in known], fmt="s--" if numeric else "s", color=color,
                            mfc="none", capsize=4,
                            label=f"{name}: paper (ImageNet)" if numeric and len(series) > 1 else "paper (ImageNet)")
        for j, (name, cells) in enumerate(table.baselines.items()):  # same metric as the panel, one line each
            cell = cells[column.key]
            if cell.final:
                ax.axhline(cell.summary.mean, color=f"C{len(series) + j}", ls=":",
                           label=f"{name} (mean of {cell.summary.n} seeds)")
        if numeric:
            ax.set_xlabel(table.spec.x_axis)
        else:
            ax.set_xticks(range(len(table.rows)))
            ax.set_xticklabels([_tick_label(table.spec.row_header, r.label) for r in table.rows], fontsize=7)
            ax.set_xlim(-0.5, len(table.rows) - 0.5)
        ax.set_ylabel(_wrap(f"{table.labels[column.key]}; {table.scale.words}", 3.6, 10))  # 4-inch tall panel
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(_wrap(table.title, width * len(columns), TITLE_SIZE), fontsize=TITLE_SIZE)
    fig.tight_layout()
    return fig


def save_png(fig, path: Path) -> Path:
    """Write a figure to `path` as PNG, atomically, and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=120)
    finally:
        plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def plot_table(table: BuiltTable, path: Path) -> Path:
    """Draw `table` to `path` (PNG, written atomically). Cells still pending are left out."""
    return save_png(table_figure(table), path)
