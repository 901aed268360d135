"""YAML presets and `--set key=value` overrides on top of the method's config dataclasses."""

from __future__ import annotations

from pathlib import Path

import yaml

from mst.config import Config, ConfigError, apply_overrides, config_from_dict, config_to_dict

PRESET_DIR = Path(__file__).resolve().parent / "presets"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def read_yaml(path: Path, what: str) -> dict:
    """A YAML mapping from `path`; a parse error is one ConfigError line."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{what} {path}{where} is not valid YAML; fix its syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must be a mapping of keys, got {type(data).__name__}")
    return data


def parse_set(item: str) -> tuple[str, object]:
    """'optim.lr=1e-3' -> ('optim.lr', 0.001); the value is parsed as YAML (numbers, lists, booleans)."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' has no '='; write it as --set section.key=value")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"override '{item}': the value is not valid YAML; quote it or fix it") from None
    # YAML 1.1 reads '5e-4' as a string: accept plain floats too
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in ".eE") and not value.isalpha() else value
        except ValueError:
            pass
    return key.strip(), value


def resolve_preset(preset: str) -> Path:
    path = Path(preset)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"config file {preset} does not exist; give a preset name "
                              f"({', '.join(preset_names())}) or an existing .yaml path")
        return path
    path = PRESET_DIR / f"{preset}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown preset '{preset}'; choose one of {', '.join(preset_names())} or give a .yaml path")
    return path


def load_config(preset: str, sets: list[str] | tuple[str, ...] = ()) -> Config:
    """The preset (name or path) with `--set` overrides applied, validated."""
    cfg = config_from_dict(read_yaml(resolve_preset(preset), "preset"))
    return apply_overrides(cfg, dict(parse_set(s) for s in sets))


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
