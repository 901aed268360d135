"""YAML presets and `--set key=value` overrides on top of the method's config dataclasses."""

from __future__ import annotations

import difflib
from pathlib import Path

import yaml

from jobs.yaml_read import load_yaml, read_yaml  # read_yaml: profiles and run configs import it from here
from mst.config import Config, ConfigError, apply_overrides, config_from_dict, config_to_dict
from mst.inputs import InputError

PRESET_DIR = Path(__file__).resolve().parent / "presets"


def yaml_names(folder: Path) -> list[str]:
    """The names of the YAML files in `folder` (presets, sweeps, cluster profiles)."""
    return sorted(p.stem for p in folder.glob("*.yaml"))


def not_found(kind: str, name_or_path: str | Path, names: list[str], known: list[str] | None = None) -> str:
    """The line for a `kind` name or .yaml path that names no file: a path's fix lists the `names`, a name's
    the near misses among `known` (default: the names; sweeps add their aliases), else the names."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        return (f"{kind} file {path} does not exist; give a {kind} name ({', '.join(names)}) "
                "or an existing .yaml path")
    near = difflib.get_close_matches(str(name_or_path), known or names, n=3)
    hint = f"did you mean {', '.join(near)}?" if near else f"choose one of {', '.join(names)} or give a .yaml path"
    return f"unknown {kind} '{name_or_path}'; {hint}"


def resolve_named_yaml(name_or_path: str | Path, folder: Path, kind: str) -> Path:
    """`folder/<name>.yaml` for a name, or the given .yaml path; a ConfigError line names the fix."""
    path = Path(name_or_path)
    given = path.suffix in (".yaml", ".yml")
    if not given:
        path = folder / f"{name_or_path}.yaml"
    # a FIFO or folder at a given path exists (read_yaml refuses it by its kind, without opening it)
    if not (path.exists() if given else path.is_file()):
        raise ConfigError(not_found(kind, name_or_path, yaml_names(folder)))
    return path


def check_name_is_stem(name: str | None, path: Path, where: str, show_stem: bool = True) -> None:
    """A YAML file that writes its own `name` (a sweep, a cluster profile) must write its file name: the file
    is found by that name, so two names for one file would split its runs. ConfigError otherwise, worded
    for `where`; `show_stem=False` keeps the profiles' wording, which names the stem only in the fix."""
    if name is not None and name != path.stem:
        stem = f" '{path.stem}'" if show_stem else ""
        raise ConfigError(f"{where}: name '{name}' differs from the file name{stem}; set name: {path.stem}")


def parse_set(item: str) -> tuple[str, object]:
    """'optim.lr=1e-3' -> ('optim.lr', 0.001); the value is parsed as YAML (numbers, lists, booleans)."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' has no '='; write it as --set section.key=value")
    key, raw = item.split("=", 1)
    try:
        value = load_yaml(raw, f"override '{key.strip()}'") if raw.strip() else ""
    except InputError as err:
        raise ConfigError(str(err)) from None
    except yaml.YAMLError:
        raise ConfigError(f"override '{item}': the value is not valid YAML; quote it or fix it") from None
    # YAML 1.1 reads '5e-4' as a string: accept plain floats too
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in ".eE") and not value.isalpha() else value
        except ValueError:
            pass
    return key.strip(), value


def load_config(preset: str, sets: list[str] | tuple[str, ...] = ()) -> Config:
    """The preset (name or path) with `--set` overrides applied, validated."""
    cfg = config_from_dict(read_yaml(resolve_named_yaml(preset, PRESET_DIR, "preset"), "preset"))
    return apply_overrides(cfg, dict(parse_set(s) for s in sets))


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
