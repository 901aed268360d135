"""The sweep file's format: its top level, its named budgets, and how a name finds a file.

`SweepFile` is a sweep file as written; `Budget` a named scale (sweeps/budgets.yaml, refined per sweep under
`budgets:`). The shared typed codec (mst.config.codec, as configs and cluster profiles are built) decodes them
with `WORDING`, and `SweepFile.__post_init__` checks what the types cannot say; the checks on meaning are
jobs.sweep's `Sweep.__post_init__`, those of the `table:` block jobs/sweep_table.py's. `at_budget` layers a
budget over the file, one loop over the budget's fields.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.config_io import not_found, yaml_names
from jobs.yaml_read import read_yaml
from mst.config import ConfigError, codec
from mst.config.codec import WrittenError, written

SWEEP_DIR = Path(__file__).resolve().parent.parent / "sweeps"
BUDGETS_FILE = "budgets.yaml"
"""The global budgets, beside the sweep files in the sweeps folder (not a sweep itself)."""
RENAMED = {"mask_ratio": "mask_prob"}  # it varies mask.prob, not a ratio
"""Old sweep name -> its file today; the old name keeps working, and keeps its runs folder."""


class SweepError(ValueError):
    """A bad sweep file; the message is one line: what is wrong and how to fix it."""


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


def sweep_names(folder: Path = SWEEP_DIR) -> list[str]:
    """The sweep files' names (paper scale); each also runs at every budget as `<name>_<budget>`."""
    return [n for n in yaml_names(folder) if n != Path(BUDGETS_FILE).stem]


def budgeted(name_or_path: str | Path, budget: str) -> str:
    """The name of a sweep at a budget: `loss_weight` -> `loss_weight_smoke` (a path keeps its folder)."""
    try:
        if resolve(name_or_path)[1] == budget:  # already `<name>_<budget>`: naming the budget twice is harmless
            return str(name_or_path)
    except SweepError:
        pass  # load_sweep names the problem
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        return str(path.with_name(f"{path.stem}_{budget}{path.suffix}"))
    return f"{name_or_path}_{budget}"


def fail(path: Path | str, what: str, fix: str) -> None:
    raise SweepError(f"{path}: {what}; {fix}")


def global_budgets(folder: Path) -> dict[str, Budget]:
    """The budgets of `folder`'s budgets.yaml, each decoded and checked as a sweep's own block is ({} without
    that file)."""
    path = folder / BUDGETS_FILE
    if not path.is_file():
        return {}
    budgets = {}
    try:
        for name, entry in read_yaml(path, "budgets").items():
            budgets[str(name)] = codec.decode(Budget, entry, f"{path}: budget '{name}'", WORDING)
            check_block("", budgets[str(name)])
    except ConfigError as err:
        raise SweepError(str(err)) from None
    except WrittenError as err:  # at the budget, as the codec words a problem inside it
        raise SweepError(f"{path}: budget '{name}': {err}") from None
    for name, budget in budgets.items():
        if budget.grid or budget.zip:
            fail(path, f"budget '{name}' gives axis values", "axes belong to a sweep: give them in the sweep "
                 f"file under budgets: {{{name}: {{grid: ...}}}}")
    return budgets


def at_budget(path: Path, sweep: SweepFile, name: str, budgets: dict[str, Budget]) -> dict[str, Any]:
    """The fields of `sweep` that budget `name` changes, at that budget: the global budget (`budgets`) refined
    by the sweep's own `budgets.<name>`, layered over the sweep's values, one loop over the budget's fields."""
    if name not in budgets and name not in sweep.budgets:
        known = sorted(set(budgets) | set(sweep.budgets))
        fail(path, f"unknown budget '{name}'", f"choose one of {', '.join(known) or '(none defined)'} "
             f"({BUDGETS_FILE} or the sweep's budgets)")
    base, own = budgets.get(name, Budget()), sweep.budgets.get(name, Budget())
    for block in ("grid", "zip"):
        for key in getattr(own, block):
            if key not in getattr(sweep, block):
                fail(path, f"budget '{name}' gives values for {block} axis '{key}', which the sweep's {block} lacks",
                     f"add '{key}' to the sweep's {block}, or remove it from budgets.{name}.{block}")
    # a global override of a key that this sweep's budget re-scales as an axis gives way to the axis
    rescaled = set(own.grid) | set(own.zip)
    scaled_overrides = {**{k: v for k, v in base.overrides.items() if k not in rescaled}, **own.overrides}
    axes = {**sweep.grid, **sweep.zip}
    for key in scaled_overrides:
        if key in axes:
            fail(path, f"budget '{name}' overrides '{key}', which the sweep sweeps",
                 f"give the axis its values at this budget under budgets: {{{name}: {{grid: {{{key}: [...]}}}}}}")
    layered = {}
    for f in dataclasses.fields(Budget):  # a field the budget leaves unset keeps the sweep's value
        mine = getattr(sweep, f.name)
        scaled = getattr(own, f.name) or getattr(base, f.name)  # the sweep's own block wins field by field
        if f.name == "description":
            layered[f.name] = " ".join(t for t in (mine, (scaled or "").strip()) if t)
        elif f.name == "overrides":  # the budget's first, then the sweep's fixed ones it leaves alone
            layered[f.name] = {**scaled_overrides, **{k: v for k, v in mine.items() if k not in scaled_overrides}}
        elif f.name in ("grid", "zip"):  # new values for the sweep's own axes (its own block's alone), in its order
            layered[f.name] = {k: getattr(own, f.name).get(k, v) for k, v in mine.items()}
        else:
            layered[f.name] = scaled or mine
    return layered


def resolve(name_or_path: str | Path) -> tuple[Path, str | None, str]:
    """(sweep file, budget or None, name) for a sweep name, an alias (`<name>_<budget>`, an old name) or a
    .yaml path (`dir/<name>_<budget>.yaml` is the alias of `dir/<name>.yaml`)."""
    path = Path(name_or_path)
    is_path = path.suffix in (".yaml", ".yml")
    folder, name = (path.parent, path.stem) if is_path else (SWEEP_DIR, str(name_or_path))
    names = sweep_names(folder)
    files = {n: folder / f"{n}{path.suffix if is_path else '.yaml'}" for n in names}
    if not is_path:  # an old name finds the file it was renamed to
        files.update({old: files[new] for old, new in RENAMED.items() if new in files})
    if name in files:
        return files[name], None, name
    budgets = set(global_budgets(SWEEP_DIR)) | (set(global_budgets(folder)) if is_path else set())
    unknown = None  # (sweep, budget) of a `<sweep>_<word>` whose word is no budget
    for i in range(len(name) - 1, 0, -1):  # `<base>_<budget>`, the budget after the last matching '_'
        if name[i] != "_" or name[:i] not in files:
            continue
        base, word = files[name[:i]], name[i + 1:]
        if word in budgets:
            return base, word, name
        own = read_yaml(base, "sweep").get("budgets")  # read here only for a budget of its own
        own = own if isinstance(own, dict) else {}
        if word in own:
            return base, word, name
        unknown = unknown or (name[:i], word, sorted(budgets | set(own)))
    if unknown is not None:
        raise SweepError(f"sweep '{unknown[0]}' has no budget '{unknown[1]}'; choose one of "
                         f"{', '.join(unknown[2]) or '(none defined)'} ({BUDGETS_FILE} or the sweep's budgets)")
    if is_path:
        raise SweepError(not_found("sweep", path, sweep_names()))
    known = list(dict.fromkeys(names + sorted(RENAMED) + [f"{n}_{b}" for n in names for b in sorted(budgets)]))
    raise SweepError(not_found("sweep", name, names, known))

