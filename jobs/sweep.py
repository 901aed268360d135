"""Sweeps (`sweeps/*.yaml`): load, validate, and expand into one RunSpec per (cell, repeat).

A sweep is data: a base preset, fixed overrides, axes (`grid`: cartesian product; `zip`: varied together),
the stages to run, the number of repeats, and the appendix table it fills (`table:`, typed and fitted to
the cells by jobs/sweep_table.py). A sweep runs at paper scale, or at a named budget (`sweeps/budgets.yaml`,
refined per sweep under `budgets:`) that changes the preset, repeats, stages, overrides and axis values, never
the cells' meaning. `load_sweep("loss_weight", budget="smoke")` and the alias `load_sweep("loss_weight_smoke")` are the
same sweep, named `loss_weight_smoke`: that name is its runs folder. The file format (`SweepFile`, `Budget` and
their type checks) is in jobs/sweep_file.py; finding the file, reading it, layering a budget and the checks on
meaning here, in the order `load_sweep` runs them.

Every problem is found here, before anything is submitted, and reported as one `SweepError` line naming the
file, the key and the fix. This module imports `mst.config` and `mst.seeding` only (no torch at import
time), so `mst-report` can expand sweeps to know which runs are missing.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.config_io import check_name_is_stem, load_config, not_found, yaml_names
from jobs.rundir import SAFE_NAME
from jobs.sweep_file import WORDING, Budget, SweepFile, cell_key, cell_label, check_block
from jobs.sweep_table import TableError, fit_table, read_table
from jobs.yaml_read import read_yaml
from mst import stages as stage_registry
from mst.config import (
    Config,
    ConfigError,
    apply_overrides,
    codec,
    config_hash,
    config_to_dict,
    dict_hash,
    valid_keys,
)
from mst.config.codec import WrittenError

STAGES = stage_registry.NAMES  # run order (mst.stages)
NEEDS_PRETRAIN = stage_registry.NEEDS_PRETRAIN  # stages that read the pre-trained weights
SEED_KEY = "train.seed"
SWEEP_DIR = Path(__file__).resolve().parent.parent / "sweeps"
BUDGETS_FILE = "budgets.yaml"
"""The global budgets, beside the sweep files in the sweeps folder (not a sweep itself)."""
RENAMED = {"mask_ratio": "mask_prob"}  # it varies mask.prob, not a ratio
"""Old sweep name -> its file today; the old name keeps working, and keeps its runs folder."""


class SweepError(ValueError):
    """A bad sweep file; the message is one line: what is wrong and how to fix it."""


def fail(path: Path | str, what: str, fix: str) -> None:
    raise SweepError(f"{path}: {what}; {fix}")


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: a resolved config for one cell and one repeat."""

    run_id: str
    """`<config_hash>-r<repeat>`: names the run folder."""
    sweep: str
    """Name of the sweep."""
    cell: dict[str, Any]
    """The swept dotted overrides of this cell (grid and zip axes only), e.g. {'loss.restore_weight': 0.6}."""
    repeat: int
    """Repeat index 0 .. repeats-1."""
    seed: int
    """Seed of the run (`train.seed`): the same for repeat r of every cell unless decorrelate_seeds."""
    config: Config
    """The resolved config: preset + fixed overrides + cell + seed."""
    stages: tuple[str, ...]
    """Stages to run, in order (pretrain first)."""
    config_hash: str
    """config_hash(config), seed included: the run's one identity on every cluster (its records name it)."""


@dataclass(frozen=True, kw_only=True)
class Sweep(SweepFile):
    """A validated sweep at one budget (or at paper scale): the decoded file, its budget applied (stages in run
    order), plus the name it was asked by, its path and its budget. Building one checks its meaning."""

    name: str
    """The name it was asked by (`loss_weight`, `loss_weight_smoke`, an old name): its runs folder."""
    path: Path
    """The file it was read from."""
    budget: str | None = None
    """The budget it runs at (None: the file as written, paper scale)."""
    configs: dict[str, Config] = field(repr=False, compare=False, default_factory=dict)
    """Each cell's config (no repeat seed) by `cell_key`, built and validated once by load_sweep."""

    def __post_init__(self) -> None:
        """Every check on the meaning of the sweep at its budget (the codec checked the types); then the
        stages in run order (pretrain first)."""
        path = self.path
        if self.table is None:
            fail(path, "'table' is missing", "lay out the table it fills (see docs), or name one, e.g. table: A10")
        stages = list(self.stages)
        for stage in stages:
            if stage not in STAGES:
                fail(path, f"unknown stage '{stage}'", f"choose from {', '.join(STAGES)}")
        if len(set(stages)) != len(stages):
            fail(path, f"stages {stages} repeat a stage", "list each stage once")
        if any(s in NEEDS_PRETRAIN for s in stages) and "pretrain" not in stages:
            fail(path, f"stages {stages} evaluate pre-trained weights but omit pretrain", "add pretrain to stages")
        keys = set(valid_keys())
        blocks = {"overrides": self.overrides, "grid": self.grid, "zip": self.zip}
        for where, block in blocks.items():
            for key in block:
                if key not in keys:
                    near = difflib.get_close_matches(key, sorted(keys), n=3)
                    section = key.split(".", 1)[0]
                    same_section = sorted(k for k in keys if k.startswith(section + "."))
                    fail(path, f"unknown override key '{key}' in {where}",
                         f"did you mean {', '.join(near)}?" if near else
                         f"valid keys in '{section}': {', '.join(same_section)}" if same_section else
                         f"valid sections: {', '.join(sorted({k.split('.', 1)[0] for k in keys}))}")
                if key == SEED_KEY:
                    fail(path, f"'{SEED_KEY}' is set in {where}", "seeds come from base_seed and repeats; set base_seed")
        for a, b in itertools.combinations(blocks, 2):
            both = sorted(set(blocks[a]) & set(blocks[b]))
            if both:
                fail(path, f"key '{both[0]}' appears in both {a} and {b}", "keep each key in one place")
        lengths = {k: len(v) for k, v in self.zip.items()}
        if len(set(lengths.values())) > 1:
            fail(path, f"zip axes have unequal lengths ({', '.join(f'{k}: {n}' for k, n in lengths.items())})",
                 "give every zip axis the same number of values")
        object.__setattr__(self, "stages", tuple(sorted(stages, key=STAGES.index)))

    def cells(self) -> list[dict[str, Any]]:
        """The cells in a stable order: grid product (file order), each crossed with the zip rows."""
        grid_keys = list(self.grid)
        grid_rows = [dict(zip(grid_keys, values)) for values in itertools.product(*self.grid.values())]
        zip_len = len(next(iter(self.zip.values()))) if self.zip else 0
        zip_rows = [{k: v[i] for k, v in self.zip.items()} for i in range(zip_len)] or [{}]
        return [{**g, **z} for g in grid_rows for z in zip_rows]

    def cell_config(self, cell: dict[str, Any]) -> Config:
        """The cell's config without the repeat seed, as load_sweep built and validated it."""
        try:
            return self.configs[cell_key(cell)]
        except KeyError:
            raise SweepError(f"{self.path}: cell {cell_label(cell)} is not a cell of sweep '{self.name}'; "
                             f"choose one of {'; '.join(cell_label(c) for c in self.cells())}") from None

    def expand(self) -> list[RunSpec]:
        """Every run: cells x repeats, in cell order then repeat order, each carrying its config and hash."""
        from mst.seeding import derive_seed  # deferred: keeps `import jobs.sweep` light

        specs = []
        for cell in self.cells():
            cell_cfg = self.configs[cell_key(cell)]  # built and validated by load_sweep
            # the cell's dict is built once; per repeat only the seed changes (config_hash per run is slow)
            data = config_to_dict(cell_cfg)
            cell_hash = dict_hash(data) if self.decorrelate_seeds else None
            for repeat in range(self.repeats):
                seed = derive_seed(self.base_seed, repeat, "pretrain", cell_hash)
                data["train"]["seed"] = seed
                digest = dict_hash(data)
                # replace() re-runs the dataclass checks; apply_overrides would rebuild the whole config per run
                cfg = dataclasses.replace(cell_cfg, train=dataclasses.replace(cell_cfg.train, seed=seed))
                specs.append(RunSpec(f"{digest}-r{repeat}", self.name, dict(cell), repeat, seed, cfg, self.stages,
                                     digest))
        return specs


def sweep_names(folder: Path = SWEEP_DIR) -> list[str]:
    """The sweep files' names (paper scale); each also runs at every budget as `<name>_<budget>`."""
    return [n for n in yaml_names(folder) if n != Path(BUDGETS_FILE).stem]


def resolve(name_or_path: str | Path) -> tuple[Path, str | None, str, dict, dict[str, Budget]]:
    """(sweep file, budget or None, name, the file's YAML mapping, the global budgets) for a sweep name, an alias
    (`<name>_<budget>`, an old name) or a .yaml path (`dir/<name>_<budget>.yaml` is the alias of
    `dir/<name>.yaml`). Each file is read once: the budgets files first (an alias's word may name one of theirs),
    then the sweep file (its own budgets may hold the word instead). The global budgets are the sweep's folder's,
    or sweeps/' where that folder has none."""
    path = Path(name_or_path)
    is_path = path.suffix in (".yaml", ".yml")
    folder, name = (path.parent, path.stem) if is_path else (SWEEP_DIR, str(name_or_path))
    names = sweep_names(folder)
    files = {n: folder / f"{n}{path.suffix if is_path else '.yaml'}" for n in names}
    if not is_path:  # an old name finds the file it was renamed to
        files.update({old: files[new] for old, new in RENAMED.items() if new in files})
    budgets = shipped = global_budgets(folder)
    if folder != SWEEP_DIR and (not budgets or name not in files):
        shipped = global_budgets(SWEEP_DIR)  # they stand in for a folder without any; an alias may name one too
    if name in files:
        return files[name], None, name, read_yaml(files[name], "sweep"), budgets or shipped
    every_budget = set(budgets) | set(shipped)
    unknown = None  # (sweep, budget, choices) of a `<sweep>_<word>` whose word is no budget
    for i in range(len(name) - 1, 0, -1):  # `<base>_<budget>`, the budget after the last matching '_'
        if name[i] != "_" or name[:i] not in files:
            continue
        base, word = files[name[:i]], name[i + 1:]
        data = read_yaml(base, "sweep")
        own = data.get("budgets")  # as written: load_sweep decodes them
        own = own if isinstance(own, dict) else {}
        if word in every_budget or word in own:
            return base, word, name, data, budgets or shipped
        unknown = unknown or (name[:i], word, sorted(every_budget | set(own)))
    if unknown is not None:
        raise SweepError(f"sweep '{unknown[0]}' has no budget '{unknown[1]}'; choose one of "
                         f"{', '.join(unknown[2]) or '(none defined)'} ({BUDGETS_FILE} or the sweep's budgets)")
    if is_path:
        raise SweepError(not_found("sweep", path, sweep_names()))
    known = list(dict.fromkeys(names + sorted(RENAMED) + [f"{n}_{b}" for n in names for b in sorted(every_budget)]))
    raise SweepError(not_found("sweep", name, names, known))


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


def load_sweep(name_or_path: str | Path, budget: str | None = None) -> Sweep:
    """Read, decode and validate a sweep, at `budget` when given (or when the name is `<name>_<budget>`); every
    cell's config is built here, once, so impossible values fail here, and the sweep carries it."""
    try:
        path, alias_budget, name, data, budgets = resolve(name_or_path)
    except ConfigError as err:
        raise SweepError(str(err)) from None
    if budget is not None:
        if alias_budget is not None:
            raise SweepError(f"sweep '{name}' already runs at budget '{alias_budget}'; drop --budget "
                             f"or name the sweep without '_{alias_budget}'")
        alias_budget, name = budget, f"{name}_{budget}"
    try:
        written = codec.decode(SweepFile, data, str(path), WORDING)
        check_name_is_stem(written.name, path, str(path))
    except ConfigError as err:
        raise SweepError(str(err)) from None
    if not SAFE_NAME.fullmatch(name):
        # the name is a folder under the runs root and part of every job name: '..' would write outside it
        fail(path, f"sweep name {name!r} is not a path-safe name",
             "rename the file with letters, digits, '.', '_' and '-' only, starting with a letter or digit")
    fields = {**{f.name: getattr(written, f.name) for f in dataclasses.fields(SweepFile)}, "name": name}
    for own in written.budgets:  # the file's own budget blocks are checked whichever budget it runs at
        if own != alias_budget:
            Sweep(**{**fields, **at_budget(path, written, own, budgets)}, path=path, budget=own)
    scaled = at_budget(path, written, alias_budget, budgets) if alias_budget is not None else {}
    sweep = Sweep(**{**fields, **scaled}, path=path, budget=alias_budget)
    try:
        base = apply_overrides(load_config(sweep.preset), sweep.overrides)
    except ConfigError as err:
        raise SweepError(f"{path}: preset/overrides: {err}") from None
    seen: dict[str, dict] = {}
    for cell in sweep.cells():  # the one place a cell's config is built and checked; the sweep carries it
        try:
            cfg = apply_overrides(base, cell)
        except ConfigError as err:
            raise SweepError(f"{path}: cell {cell_label(cell)}: {err}") from None
        sweep.configs[cell_key(cell)] = cfg
        digest = config_hash(cfg)
        if digest in seen:
            fail(path, f"cells {cell_label(seen[digest])} and {cell_label(cell)} give the same config",
                 "remove the duplicate value")
        seen[digest] = cell
    if isinstance(sweep.table, dict):  # a named table (`table: A10`) is laid out, and checked, in its own file
        try:
            spec = read_table(sweep.table, f"{path}: table")
        except TableError as err:
            raise SweepError(str(err)) from None
        try:
            fit_table(spec, sweep)
        except TableError as err:
            raise SweepError(f"{path}: {err}") from None
    return sweep


def budgeted(name_or_path: str | Path, budget: str) -> str:
    """The name of a sweep at a budget: `loss_weight` -> `loss_weight_smoke` (a path keeps its folder)."""
    try:
        if resolve(name_or_path)[1] == budget:  # already `<name>_<budget>`: naming the budget twice is harmless
            return str(name_or_path)
    except (SweepError, ConfigError):
        pass  # load_sweep names the problem
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        return str(path.with_name(f"{path.stem}_{budget}{path.suffix}"))
    return f"{name_or_path}_{budget}"
