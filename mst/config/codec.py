"""Build configs from plain dicts (with type checks), apply dotted overrides, serialise and hash."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from functools import lru_cache
from typing import Any, Literal

from .errors import ConfigError
from .schema import Config

INT_LIMIT = 2**63  # integers reach torch and numpy as int64


def _sections() -> dict[str, type]:
    return {f.name: f.type if isinstance(f.type, type) else _hints(Config)[f.name] for f in
            dataclasses.fields(Config)}


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def valid_keys() -> list[str]:
    """Every dotted key a config accepts, e.g. 'optim.lr'."""
    return [f"{name}.{f.name}" for name, cls in _sections().items() for f in dataclasses.fields(cls)]


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        inner = _describe(args[0])
        return f"a list of {inner}" if args[-1] is Ellipsis else f"a list of {len(args)} x {inner}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def scalar_matches(value: Any, tp: type) -> bool:
    """Whether a YAML scalar fits a bool / int / float / str field (True is not an int, 3 is a float)."""
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, tp)


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check `value` against the field type `tp`; return it in canonical form (tuples, floats)."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"config key '{key}': expected {_describe(tp)}, got {value!r}; fix the value")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"config key '{key}': invalid value {value!r}; choose {_describe(tp)}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad
        args = typing.get_args(tp)
        if args[-1] is Ellipsis:
            return tuple(_coerce(key, v, args[0]) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"config key '{key}': expected {len(args)} values, got {len(value)}; "
                              f"give {_describe(tp)}")
        return tuple(_coerce(key, v, t) for v, t in zip(value, args))
    if tp in (bool, int, float, str):
        if not scalar_matches(value, tp):
            raise bad
        if tp is float and not math.isfinite(value):
            raise ConfigError(f"config key '{key}': expected a finite number, got {value!r}; fix the value")
        if tp is int and not -INT_LIMIT <= value < INT_LIMIT:
            raise ConfigError(f"config key '{key}': {value} does not fit a 64-bit integer; give a smaller value")
        return float(value) if tp is float else value
    raise TypeError(f"unsupported field type {tp} for {key}")


def _build_section(name: str, cls: type, values: Any) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"config section '{name}': expected a mapping of keys, got {values!r}; "
                          f"valid keys: {', '.join(f.name for f in dataclasses.fields(cls))}")
    hints = _hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            raise ConfigError(f"unknown config key '{name}.{key}'; valid keys in '{name}': "
                              f"{', '.join(sorted(known))}")
    return cls(**{k: _coerce(f"{name}.{k}", v, hints[k]) for k, v in values.items()})


def config_from_dict(data: dict | None) -> Config:
    """A validated Config from a nested dict; missing keys take the defaults (the paper's values)."""
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(data).__name__}; "
                          f"sections: {', '.join(_sections())}")
    sections = _sections()
    for name in data:
        if name not in sections:
            raise ConfigError(f"unknown config section '{name}'; valid sections: {', '.join(sections)}")
    return Config(**{name: _build_section(name, cls, data.get(name, {})) for name, cls in sections.items()})


def config_to_dict(cfg: Config) -> dict:
    """A nested, JSON- and YAML-safe dict (tuples become lists)."""
    def plain(v: Any) -> Any:
        return [plain(x) for x in v] if isinstance(v, (tuple, list)) else v
    return {name: {k: plain(v) for k, v in dataclasses.asdict(getattr(cfg, name)).items()} for name in _sections()}


def apply_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """Apply dotted overrides {'optim.lr': 1e-3} on top of `cfg`, validating each key and value."""
    data = config_to_dict(cfg)
    keys = set(valid_keys())
    for dotted, value in overrides.items():
        if dotted not in keys:
            section = dotted.split(".", 1)[0]
            near = [k for k in sorted(keys) if k.startswith(section + ".")]
            if not near:
                raise ConfigError(f"unknown config key '{dotted}': no section '{section}'; valid sections: "
                                  f"{', '.join(_sections())}")
            raise ConfigError(f"unknown config key '{dotted}'; valid keys: {', '.join(near)}")
        section, key = dotted.split(".", 1)
        data[section][key] = value
    return config_from_dict(data)


def config_hash(cfg: Config) -> str:
    """A stable 12-hex-digit id of the resolved config (same on every machine and process)."""
    return dict_hash(config_to_dict(cfg))


@lru_cache(maxsize=1)
def _default_dict() -> dict:
    return config_to_dict(Config())


def dict_hash(data: dict) -> str:
    """`config_hash` of the config whose `config_to_dict` is `data` (lets sweeps hash many seeds quickly).

    Only values that differ from the defaults enter the hash: a field added later with a default keeps the ids
    of existing runs (and their folders) valid, while any value that differs still gives a new id.
    """
    defaults = _default_dict()
    changed = {name: {k: v for k, v in section.items() if defaults.get(name, {}).get(k, object()) != v}
               for name, section in data.items()}
    text = json.dumps({k: v for k, v in changed.items() if v}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]
