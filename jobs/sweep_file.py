"""The sweep file's format: its top level and its named budgets, as written.

`SweepFile` is a sweep file as written; `Budget` a named scale (sweeps/budgets.yaml, refined per sweep under
`budgets:`). The shared typed codec (mst.config.codec, as configs and cluster profiles are built) decodes them
with `WORDING`, and `SweepFile.__post_init__` checks what the types cannot say; the checks on meaning are
jobs.sweep's `Sweep.__post_init__`, those of the `table:` block jobs/sweep_table.py's. jobs.sweep finds,
reads and layers them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mst.config.codec import WrittenError, written


def blank_empty(value: Any) -> Any:
    """A mapping left blank (`grid:` with nothing under it is YAML null) as an empty one: it takes its default."""
    return {} if value is None else value


BLANK = written(blank_empty)
"""Field metadata of a mapping that may be written blank."""


@dataclass(frozen=True)
class Budget:
    """A named scale: what changes when a sweep runs at it. Unset fields keep the sweep's own value.

    Each field is the SweepFile field of its name (same type, or None for unset), so `at_budget` layers the two
    in one loop over these fields; they are written out rather than derived from SweepFile because their
    defaults and meanings differ (unset here, the paper's value there)."""

    description: str | None = None
    """Printed under the table after the sweep's own description (the per-sweep one replaces the global one)."""
    preset: str | None = None
    """Base preset at this budget (e.g. smoke)."""
    repeats: int | None = None
    """Seeded repeats per cell at this budget."""
    stages: tuple[str, ...] | None = None
    """Stages at this budget (e.g. k-NN in place of the linear probe)."""
    overrides: dict[str, Any] = field(default_factory=dict, metadata=BLANK)
    """Dotted overrides; they win over the sweep's fixed overrides and must not name a swept key."""
    grid: dict[str, Any] = field(default_factory=dict, metadata=BLANK)
    """New values (a non-empty list) for grid axes the sweep already has (per sweep only), e.g. the epoch axis
    scaled down."""
    zip: dict[str, Any] = field(default_factory=dict, metadata=BLANK)
    """New values (a non-empty list) for zip axes the sweep already has (per sweep only), same length as the
    sweep's."""


@dataclass(frozen=True)
class SweepFile:
    """A sweep file as written (`sweeps/<name>.yaml`), before a budget is applied."""

    table: Any = None
    """The table this sweep fills: its layout (a mapping read by jobs/sweep_table.py) or the id of a table
    another sweep file lays out (e.g. A10)."""
    name: str | None = None
    """Sweep name; equals the file name without `.yaml` (may be omitted)."""
    description: str = ""
    """Free text shown under the table (surrounding blank lines dropped)."""
    preset: str = "paper"
    """Base preset name (jobs/presets) or path."""
    repeats: int = 5
    """Seeded repeats per cell."""
    base_seed: int = 0
    """Base seed that repeat seeds derive from."""
    decorrelate_seeds: bool = False
    """Give every cell its own seeds (cells are then unpaired; the report uses Welch's test)."""
    stages: tuple[str, ...] = ("pretrain",)
    """Stages to run for every run."""
    overrides: dict[str, Any] = field(default_factory=dict, metadata=BLANK)
    """Fixed dotted overrides applied to every cell."""
    grid: dict[str, Any] = field(default_factory=dict, metadata=BLANK)
    """Axes whose cartesian product forms the cells: dotted key -> a non-empty list of values (each checked
    as a config value when the cells are built)."""
    zip: dict[str, Any] = field(default_factory=dict, metadata=BLANK)
    """Axes varied together (equal lengths), crossed with the grid."""
    budgets: dict[str, Budget] = field(default_factory=dict, metadata=BLANK)
    """Per-sweep refinements of named budgets, merged over sweeps/budgets.yaml's."""

    def __post_init__(self) -> None:
        # what the types cannot say, of the file and of each of its budget blocks; the codec words a
        # WrittenError raised here as one line at the file (a Sweep checks its meaning in its own instead)
        check_block("", self)
        for name, budget in self.budgets.items():
            check_block(f"budgets.{name}.", budget)
        object.__setattr__(self, "description", self.description.strip())


def check_block(at: str, block: SweepFile | Budget) -> None:
    """Raise WrittenError unless `block` (written at `at`) has a minimum where it needs one, non-empty lists of
    stages and axis values, and a table that is a layout or an id."""
    if block.repeats is not None and block.repeats < 1:
        raise WrittenError(f"'{at}repeats' must be an integer >= 1, got {block.repeats}; e.g. {at}repeats: 5")
    if getattr(block, "base_seed", 0) < 0:
        raise WrittenError(f"'base_seed' must be an integer >= 0, got {block.base_seed}; e.g. base_seed: 0")
    if block.stages is not None and not block.stages:
        raise WrittenError(f"'{at}stages' must be a non-empty list; e.g. {at}stages: [pretrain, knn]")
    for axes in ("grid", "zip"):
        for name, values in getattr(block, axes).items():
            if not isinstance(values, list) or not values:
                raise WrittenError(f"{at}{axes} axis '{name}' must be a non-empty list, got {values!r}; "
                                   f"write e.g. {name}: [value1, value2]")
    table = getattr(block, "table", None)
    if table is not None and (not isinstance(table, (dict, str)) or not table):
        raise WrittenError("'table' must be the table's layout or the id of a table; e.g. table: {id: A10, ...}")


# sweep files name a near-miss from the top (budgets.smoke.repeats), then list the valid keys
WORDING = {"unknown": "{where}: unknown key '{key}'; {dotted_hint}valid keys: {valid}"}


def cell_label(cell: dict[str, Any]) -> str:
    """'loss.restore_weight=0.6, mask.prob=0.5' (or 'base' for the single cell of an axis-free sweep)."""
    return ", ".join(f"{k}={v}" for k, v in cell.items()) or "base"


def cell_key(cell: dict[str, Any]) -> str:
    """A canonical string for a cell (numbers compared by value: 1 and 1.0 are one cell)."""
    def norm(v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, (int, float, list, tuple)):
            return v
        if isinstance(v, (list, tuple)):
            return [norm(x) for x in v]
        return float(v)
    return json.dumps({k: norm(v) for k, v in cell.items()}, sort_keys=True)
