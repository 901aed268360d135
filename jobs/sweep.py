"""Sweeps (`sweeps/*.yaml`): load, validate, and expand into one RunSpec per (cell, repeat).

A sweep is data: a base preset, fixed overrides, axes (`grid`: cartesian product; `zip`: varied together),
the stages to run and the number of repeats. Every problem is found here, before anything is submitted, and
reported as one `SweepError` line naming the file, the key and the fix.

This module imports `mst.config` and `mst.seeding` only (no torch at import time), so `mst-report` can expand
sweeps to know which runs are missing.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.config_io import load_config, read_yaml, resolve_named_yaml, yaml_names
from jobs.rundir import SAFE_NAME
from mst import stages as stage_registry
from mst.config import (
    Config,
    ConfigError,
    apply_overrides,
    config_hash,
    config_to_dict,
    dict_hash,
    valid_keys,
)

SWEEP_DIR = Path(__file__).resolve().parent.parent / "sweeps"
STAGES = stage_registry.NAMES  # run order (mst.stages)
NEEDS_PRETRAIN = stage_registry.NEEDS_PRETRAIN  # stages that read the pre-trained weights
TOP_KEYS = ("name", "table", "description", "preset", "repeats", "base_seed", "decorrelate_seeds", "stages",
            "overrides", "grid", "zip")
SEED_KEY = "train.seed"


class SweepError(ValueError):
    """A bad sweep file; the message is one line: what is wrong and how to fix it."""


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: a resolved config for one cell and one repeat."""

    run_id: str
    """`<config_hash of the resolved config, seed included>-r<repeat>`: names the run folder."""
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


@dataclass(frozen=True)
class Sweep:
    """A validated sweep file."""

    name: str
    """Sweep name; equals the file name without `.yaml`."""
    table: str
    """The appendix table this sweep feeds (a key of analysis.tables.SPECS, e.g. 'A10')."""
    description: str
    """Free text shown under the table (e.g. that the per-run budget is lighter than the preset)."""
    preset: str
    """Base preset name (jobs/presets) or path."""
    repeats: int
    """Seeded repeats per cell."""
    base_seed: int
    """Base seed that repeat seeds derive from."""
    decorrelate_seeds: bool
    """Give every cell its own seeds (cells are then unpaired; the report uses Welch's test)."""
    stages: tuple[str, ...]
    """Stages to run for every run."""
    overrides: dict[str, Any]
    """Fixed dotted overrides applied to every cell."""
    grid: dict[str, list]
    """Axes whose cartesian product forms the cells."""
    zip: dict[str, list]
    """Axes varied together (equal lengths), crossed with the grid."""
    path: Path
    """The file it was read from."""
    _base: Config = field(repr=False, compare=False, default=None)  # preset + fixed overrides, cached

    def cells(self) -> list[dict[str, Any]]:
        """The cells in a stable order: grid product (file order), each crossed with the zip rows."""
        grid_keys = list(self.grid)
        grid_rows = [dict(zip(grid_keys, values)) for values in itertools.product(*self.grid.values())]
        zip_len = len(next(iter(self.zip.values()))) if self.zip else 0
        zip_rows = [{k: v[i] for k, v in self.zip.items()} for i in range(zip_len)] or [{}]
        return [{**g, **z} for g in grid_rows for z in zip_rows]

    def cell_config(self, cell: dict[str, Any]) -> Config:
        """The cell's config without the repeat seed (raises SweepError on an impossible value)."""
        try:
            return apply_overrides(self._base, cell)
        except ConfigError as err:
            raise SweepError(f"{self.path}: cell {cell_label(cell)}: {err}") from None

    def expand(self) -> list[RunSpec]:
        """Every run: cells x repeats, in cell order then repeat order."""
        from mst.seeding import derive_seed  # deferred: keeps `import jobs.sweep` light

        specs = []
        for cell in self.cells():
            cell_cfg = self.cell_config(cell)
            cell_hash = config_hash(cell_cfg) if self.decorrelate_seeds else None
            # the cell's dict is built once; per repeat only the seed changes (config_hash per run is slow)
            data = config_to_dict(cell_cfg)
            for repeat in range(self.repeats):
                seed = derive_seed(self.base_seed, repeat, "pretrain", cell_hash)
                data["train"]["seed"] = seed
                # replace() re-runs the dataclass checks; apply_overrides would rebuild the whole config per run
                cfg = dataclasses.replace(cell_cfg, train=dataclasses.replace(cell_cfg.train, seed=seed))
                specs.append(RunSpec(f"{dict_hash(data)}-r{repeat}", self.name, dict(cell), repeat, seed, cfg,
                                     self.stages))
        return specs


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


def sweep_names() -> list[str]:
    return yaml_names(SWEEP_DIR)


def _fail(path: Path, what: str, fix: str) -> None:
    raise SweepError(f"{path}: {what}; {fix}")


def _check_key(path: Path, key: str, where: str, keys: set[str]) -> None:
    if key in keys:
        return
    near = difflib.get_close_matches(key, sorted(keys), n=3)
    section = key.split(".", 1)[0]
    same_section = sorted(k for k in keys if k.startswith(section + "."))
    hint = (f"did you mean {', '.join(near)}?" if near else
            f"valid keys in '{section}': {', '.join(same_section)}" if same_section else
            f"valid sections: {', '.join(sorted({k.split('.', 1)[0] for k in keys}))}")
    _fail(path, f"unknown override key '{key}' in {where}", hint)


def _mapping(path: Path, data: dict, key: str) -> dict:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        _fail(path, f"'{key}' must be a mapping of dotted keys, got {type(value).__name__}",
              f"write e.g. {key}: {{loss.restore_weight: 0.6}}")
    return value


def _axes(path: Path, data: dict, key: str) -> dict[str, list]:
    axes = _mapping(path, data, key)
    for name, values in axes.items():
        if not isinstance(values, list) or not values:
            _fail(path, f"{key} axis '{name}' must be a non-empty list, got {values!r}",
                  f"write e.g. {name}: [value1, value2]")
    return axes


def _int(path: Path, data: dict, key: str, default: int, minimum: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _fail(path, f"'{key}' must be an integer >= {minimum}, got {value!r}", f"e.g. {key}: {max(default, minimum)}")
    return value


def load_sweep(name_or_path: str | Path) -> Sweep:
    """Read and validate a sweep; every cell's config is built so impossible values fail here."""
    try:
        path = resolve_named_yaml(name_or_path, SWEEP_DIR, "sweep")
        data = read_yaml(path, "sweep")
    except ConfigError as err:
        raise SweepError(str(err)) from None
    for key in data:
        if key not in TOP_KEYS:
            near = difflib.get_close_matches(str(key), TOP_KEYS, n=1)
            _fail(path, f"unknown key '{key}'",
                  f"did you mean '{near[0]}'?" if near else f"valid keys: {', '.join(TOP_KEYS)}")
    name = data.get("name", path.stem)
    if name != path.stem:
        _fail(path, f"name '{name}' differs from the file name '{path.stem}'", f"set name: {path.stem}")
    if not SAFE_NAME.fullmatch(name):
        # the name is a folder under the runs root and part of every job name: '..' would write outside it
        _fail(path, f"sweep name {name!r} is not a path-safe name",
              "rename the file with letters, digits, '.', '_' and '-' only, starting with a letter or digit")
    table = data.get("table")
    if not isinstance(table, str) or not table:
        _fail(path, "'table' is missing", "name the appendix table it feeds, e.g. table: A10")
    description = data.get("description", "")
    if not isinstance(description, str):
        _fail(path, "'description' must be a string", "quote it")
    preset = data.get("preset", "paper")
    repeats = _int(path, data, "repeats", 5, 1)
    base_seed = _int(path, data, "base_seed", 0, 0)
    decorrelate = data.get("decorrelate_seeds", False)
    if not isinstance(decorrelate, bool):
        _fail(path, f"'decorrelate_seeds' must be true or false, got {decorrelate!r}", "e.g. decorrelate_seeds: false")

    stages = data.get("stages", ["pretrain"])
    if not isinstance(stages, list) or not stages:
        _fail(path, "'stages' must be a non-empty list", "e.g. stages: [pretrain, knn]")
    for stage in stages:
        if stage not in STAGES:
            _fail(path, f"unknown stage '{stage}'", f"choose from {', '.join(STAGES)}")
    if len(set(stages)) != len(stages):
        _fail(path, f"stages {stages} repeat a stage", "list each stage once")
    if any(s in NEEDS_PRETRAIN for s in stages) and "pretrain" not in stages:
        _fail(path, f"stages {stages} evaluate pre-trained weights but omit pretrain", "add pretrain to stages")
    stages = tuple(sorted(stages, key=STAGES.index))  # pretrain always runs first

    overrides, grid, zipped = _mapping(path, data, "overrides"), _axes(path, data, "grid"), _axes(path, data, "zip")
    keys = set(valid_keys())
    for where, block in (("overrides", overrides), ("grid", grid), ("zip", zipped)):
        for key in block:
            _check_key(path, key, where, keys)
            if key == SEED_KEY:
                _fail(path, f"'{SEED_KEY}' is set in {where}", "seeds come from base_seed and repeats; set base_seed")
    blocks = {"overrides": overrides, "grid": grid, "zip": zipped}
    for a, b in itertools.combinations(blocks, 2):
        both = sorted(set(blocks[a]) & set(blocks[b]))
        if both:
            _fail(path, f"key '{both[0]}' appears in both {a} and {b}", "keep each key in one place")
    lengths = {k: len(v) for k, v in zipped.items()}
    if len(set(lengths.values())) > 1:
        _fail(path, f"zip axes have unequal lengths ({', '.join(f'{k}: {n}' for k, n in lengths.items())})",
              "give every zip axis the same number of values")

    try:
        base = apply_overrides(load_config(preset), overrides)
    except ConfigError as err:
        raise SweepError(f"{path}: preset/overrides: {err}") from None
    sweep = Sweep(name, table, description.strip(), preset, repeats, base_seed, decorrelate, stages, overrides,
                  grid, zipped, path, base)
    seen: dict[str, dict] = {}
    for cell in sweep.cells():
        digest = config_hash(sweep.cell_config(cell))
        if digest in seen:
            _fail(path, f"cells {cell_label(seen[digest])} and {cell_label(cell)} give the same config",
                  "remove the duplicate value")
        seen[digest] = cell
    return sweep

