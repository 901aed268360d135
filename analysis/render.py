"""Render built tables: terminal (rich), Markdown, LaTeX (booktabs) and CSV.

Every value column becomes ours (mean ± s.e. (n), or progress), the paper's value (± its s.e. where the appendix
gives one) and, only where the runs are at the paper's budget and data, Δ (marked † within noise); elsewhere the
paper column is headed as not comparable and no Δ is printed. A table whose records carry baselines adds the rows
'random init' and 'raw pixels' and a column Δ init.
"""

from __future__ import annotations

import io
import math

from .assemble import BuiltRow, BuiltTable, CellResult, table_frame
from .csv_safe import safe_frame
from .footnotes import NOISE
from .stats import format_p

FORMATS = ("term", "md", "latex", "csv")
EXTENSIONS = {"term": "txt", "md": "md", "latex": "tex", "csv": "csv"}


def ours(cell: CellResult, pm: str = "\u00b1") -> str:
    if not cell.final:
        if cell.pending == 0:
            return f"failed (0/{cell.expected})"
        return f"{cell.done}/{cell.expected}"
    s = cell.summary
    marked = f"{s.non_finite} of {s.total} non-finite"
    if s.n == 0:
        return f"nan ({marked})"
    note = f"; {marked}" if s.non_finite else ""
    if s.se is None:
        return f"{s.mean:.2f} (n=1, no s.e.{note})"
    return f"{s.mean:.2f} {pm} {s.se:.2f} (n={s.n}{note})"


def paper(cell: CellResult, mark: str = "", pm: str = "\u00b1") -> str:
    """The paper's value, its standard error where the appendix gives one, and the mark of the row's note."""
    if cell.paper is None:
        return "\u2014"
    return f"{cell.paper:.1f}" + (f" {pm} {cell.paper_se:.2f}" if cell.paper_se is not None else "") + mark


def delta(cell: CellResult) -> str:
    if cell.delta is None or not math.isfinite(cell.delta):
        return "\u2014"
    return f"{cell.delta:+.2f}" + (NOISE if cell.within_noise else "")


PAPER_HEADER = {True: "paper", False: "paper (ImageNet, not comparable)"}


def p_text(table: BuiltTable, row: BuiltRow, key: str) -> str:
    if row.is_ref and key not in row.tests:
        index = table.rows.index(row)
        testers = [other for other, spec in zip(table.rows, table.spec.rows) if spec.ref == index]
        # a reference only where some row is tested against it (not where both read the same records)
        same = all(other.cells[key].reads_same_records(row.cells[key]) for other in testers)
        return "\u2014" if testers and same else "ref"
    t = row.tests.get(key)
    if t is None:
        return "\u2014"
    return f"{format_p(t.p)} ({t.kind})"


def delta_init(table: BuiltTable, key: str, cell: CellResult) -> str:
    value = table.delta_init(key, cell)
    return "\u2014" if value is None or not math.isfinite(value) else f"{value:+.2f}"


def header(table: BuiltTable) -> list[str]:
    out = list(table.spec.row_header)
    for column in table.spec.columns:
        comparable = table.comparable.get(column.key, False)
        out += [table.labels[column.key], PAPER_HEADER[comparable]] + (["\u0394"] if comparable else []) + \
            (["\u0394 init"] if table.baselines else []) + (["p-value"] if table.tested else [])
    return out


def body(table: BuiltTable, pm: str = "\u00b1") -> list[list[str]]:
    rows = []
    for row in table.rows:
        line = list(row.label)
        for column in table.spec.columns:
            cell = row.cells[column.key]
            line += [ours(cell, pm), paper(cell, row.note_mark, pm)] + \
                ([delta(cell)] if table.comparable.get(column.key, False) else [])
            if table.baselines:
                line.append(delta_init(table, column.key, cell))
            if table.tested:
                line.append(p_text(table, row, column.key))
        rows.append(line)
    return rows + baseline_body(table, pm)


def baseline_body(table: BuiltTable, pm: str = "\u00b1") -> list[list[str]]:
    """The baseline rows: label in the first header column, ours, no paper value, Δ init (raw pixels only)."""
    rows = []
    for label, cells in table.baselines.items():
        line = [label] + [""] * (len(table.spec.row_header) - 1)
        for column in table.spec.columns:
            cell = cells[column.key]
            line += [ours(cell, pm), "\u2014"] + (["\u2014"] if table.comparable.get(column.key, False) else []) + \
                ["\u2014" if label == "random init" else delta_init(table, column.key, cell)]
            if table.tested:
                line.append("\u2014")
        rows.append(line)
    return rows


def to_markdown(table: BuiltTable) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    head = header(table)
    out = [f"**{table.title}**", "", line(head), "|" + "|".join("---" for _ in head) + "|"]
    out += [line(r) for r in body(table)]
    out.append("")
    out += [f"- {note}" for note in table.footnotes]
    return "\n".join(out) + "\n"


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "\u00b1": r"$\pm$", "\u0394": r"$\Delta$", "\u2212": "$-$", "\u221a": r"$\surd$",
                  "\u2014": "---", "\u2020": r"$^\dagger$", "\u00b2": r"$^2$", "\u00a7": r"\S{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def to_latex(table: BuiltTable) -> str:
    head = header(table)
    n_label = len(table.spec.row_header)
    spec = "l" * n_label + "r" * (len(head) - n_label)
    out = [r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(table.title)}}}",
           rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(latex_escape(h) for h in head) + r" \\",
           r"\midrule"]
    out += [" & ".join(latex_escape(c) for c in r) + r" \\" for r in body(table)]
    out += [r"\bottomrule", r"\end{tabular}", r"\par\smallskip", r"\begin{minipage}{\linewidth}\footnotesize"]
    out += [latex_escape(note) + r"\par" for note in table.footnotes]
    out += [r"\end{minipage}", r"\end{table}"]
    return "\n".join(out) + "\n"


def to_csv(table: BuiltTable) -> str:
    buf = io.StringIO()
    safe_frame(table_frame(table)).to_csv(buf, index=False)  # OWASP: labels never run as formulas
    return buf.getvalue()


def to_rich(table: BuiltTable):
    """A rich renderable: the table with its footnotes as the caption."""
    from rich.table import Table
    from rich.text import Text

    from mst.echo import shown

    # Text, not str: rich would read '[smoke scale]' or an error's brackets as markup; shown: a label's escape
    # sequences would drive the terminal
    t = Table(title=Text(shown(table.title)), caption=Text("\n".join(shown(n) for n in table.footnotes)),
              caption_justify="left",
              title_justify="left")
    n_label = len(table.spec.row_header)
    for i, h in enumerate(header(table)):
        t.add_column(Text(shown(h)), justify="left" if i < n_label else "right", no_wrap=i >= n_label)
    lines = body(table)
    for row, cells in zip(table.rows, lines):
        style = None if all(c.final for c in row.cells.values()) else "yellow"
        t.add_row(*(Text(shown(c)) for c in cells), style=style)
    if table.baselines:
        t.add_section()  # a rule between the cells and the baselines
    for cells in lines[len(table.rows):]:
        t.add_row(*(Text(shown(c)) for c in cells), style="dim")
    return t


def to_text(table: BuiltTable, width: int = 160) -> str:
    """The terminal rendering as plain text (for --out with --format term)."""
    from rich.console import Console

    console = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    console.print(to_rich(table))
    return console.export_text()


def render(table: BuiltTable, fmt: str) -> str:
    return {"md": to_markdown, "latex": to_latex, "csv": to_csv, "term": to_text}[fmt](table)
