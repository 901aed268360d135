"""One PNG per sweep: the metric against the swept value, mean with s.e. error bars, the paper's points, and
the baselines (random init, raw pixels) as horizontal lines when the records carry them."""

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
"""Width (inches) of one column's panel."""


def _wrap(text: str, width_in: float, size: float) -> str:
    """`text` broken into lines that fit `width_in` inches at `size` points (a glyph averages under 0.6 em)."""
    chars = max(20, int(width_in * 72 / (0.6 * size)) - 4)  # 4 characters of margin for the figure's edges
    return "\n".join(textwrap.wrap(text, chars))


def _numeric(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def table_figure(table: BuiltTable) -> Any:
    """The matplotlib Figure of `table`: one panel per column, its y axis named by the metric the table used
    (the stand-in when the sweep lacks the paper's stage), the title wrapped to the figure's width."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = table.spec.columns
    numeric = table.spec.x_axis is not None and all(_numeric(r.label[-1]) is not None for r in table.rows)
    fig, axes = plt.subplots(1, len(columns), figsize=(PANEL_WIDTH_IN * len(columns), 4), squeeze=False)
    for ax, column in zip(axes[0], columns):
        series: dict[str, list[tuple[float, object]]] = defaultdict(list)
        for i, row in enumerate(table.rows):
            if numeric:
                series[" ".join(row.label[:-1]) or "ours"].append((float(row.label[-1]), row.cells[column.key]))
            else:
                series["ours"].append((float(i), row.cells[column.key]))
        for j, (name, points) in enumerate(series.items()):
            color = f"C{j}"
            done = [(x, c) for x, c in points if c.final]
            if done:
                ax.errorbar([x for x, _ in done], [c.summary.mean for _, c in done],
                            yerr=[c.summary.se or 0.0 for _, c in done], fmt="o-", color=color, capsize=4,
                            label=f"{name} (mean \u00b1 s.e.)" if numeric else "ours (mean \u00b1 s.e.)")
            known = [(x, c.paper) for x, c in points if c.paper is not None]
            if known:
                ax.plot([x for x, _ in known], [v for _, v in known], "s--", color=color, mfc="none",
                        label=f"{name} (paper)" if numeric else "paper")
        for j, (name, cells) in enumerate(table.baselines.items()):  # same metric as the panel, one line each
            cell = cells[column.key]
            if cell.final:
                ax.axhline(cell.summary.mean, color=f"C{len(series) + j}", ls=":",
                           label=f"{name} (mean of {cell.summary.n} seeds)")
        if numeric:
            ax.set_xlabel(table.spec.x_axis)
        else:
            ax.set_xticks(range(len(table.rows)))
            ax.set_xticklabels(["\n".join(r.label) for r in table.rows], fontsize=7)
        ax.set_ylabel(_wrap(table.labels[column.key], 3.6, 10))  # 4-inch tall panel
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(_wrap(table.title, PANEL_WIDTH_IN * len(columns), TITLE_SIZE), fontsize=TITLE_SIZE)
    fig.tight_layout()
    return fig


def plot_table(table: BuiltTable, path: Path) -> Path:
    """Draw `table` to `path` (PNG, written atomically). Cells still pending are left out."""
    import matplotlib.pyplot as plt

    fig = table_figure(table)
    path = Path(path)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=120)
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path
