"""Sweeps (`sweeps/*.yaml`): load, validate, and expand into one RunSpec per (cell, repeat).

A sweep is data: a base preset, fixed overrides, axes (`grid`: cartesian product; `zip`: varied together),
the stages to run, the number of repeats, and the appendix table it fills (`table:`, typed and fitted to
the cells by jobs/sweep_table.py). A sweep runs at paper scale, or at a named budget (`sweeps/budgets.yaml`,
refined per sweep under `budgets:`) that changes the preset, repeats, stages, overrides and axis values, never
the cells' meaning. `load_sweep("loss_weight", budget="smoke")` and the alias `load_sweep("loss_weight_smoke")` are the
same sweep, named `loss_weight_smoke`: that name is its runs folder. The file format (`SweepFile`, `Budget`,
their type checks, budget merging and name resolution) is in jobs/sweep_file.py; the checks on meaning here.

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

from jobs.config_io import check_name_is_stem, load_config
from jobs.rundir import SAFE_NAME
from jobs.sweep_file import (  # noqa: F401  (re-exported: the names callers import from jobs.sweep)
    SWEEP_DIR,
    WORDING,
    SweepError,
    SweepFile,
    at_budget,
    budgeted,
    cell_key,
    cell_label,
    fail,
    global_budgets,
    resolve,
    sweep_names,
)
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

STAGES = stage_registry.NAMES  # run order (mst.stages)
NEEDS_PRETRAIN = stage_registry.NEEDS_PRETRAIN  # stages that read the pre-trained weights
SEED_KEY = "train.seed"


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


def load_sweep(name_or_path: str | Path, budget: str | None = None) -> Sweep:
    """Read, decode and validate a sweep, at `budget` when given (or when the name is `<name>_<budget>`); every
    cell's config is built here, once, so impossible values fail here, and the sweep carries it."""
    try:
        path, alias_budget, name = resolve(name_or_path)
        data = read_yaml(path, "sweep")
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
    budgets = global_budgets(path.parent) or global_budgets(SWEEP_DIR)
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
