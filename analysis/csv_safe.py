"""Cells a spreadsheet must not run: the OWASP rule for CSV injection.

A cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage return is read as a formula by Excel,
LibreOffice and Google Sheets; a row label, column label or swept value from a sweep file could carry one
(`=HYPERLINK(...)`, `@SUM(...)`, `-2+3+cmd|' /C calc'!A0`). Such a string gets a leading `'`, which the
spreadsheet shows as text. Numbers stay numbers: a float cell is never touched, nor a string that is a plain
decimal number such as `-1.5` or `+2e-3` (a swept value's label).
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def neutralise(value: Any) -> Any:
    """`value`, with a `'` before a string a spreadsheet would read as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with every cell and column name neutralised, ready for `to_csv`."""
    return frame.map(neutralise).rename(columns=neutralise)
