"""One typed-data codec for trees of frozen dataclasses: configs, cluster profiles, sweep files.

`decode(cls, data, where)` builds `cls` from plain data (parsed YAML or JSON) and checks every value against its
field's type; `encode(obj)` turns a tree back into plain data; `dotted_keys(cls)` lists every leaf key. A bad key
or value is one `DecodeError` line naming where it is, the key, what is wrong and how to fix it. Option lists
come from the `Literal` types, so a new option is added in one place. A field declared with `metadata=written(reader)`
accepts a looser written form (a text for a one-item list, say) that `reader` turns into its type's form; a
reader or a `__post_init__` raises `WrittenError` for a value the types alone cannot refuse, and it is worded
at its key like every other problem.

The config front end (`config_from_dict`, `apply_overrides`, `config_hash`, ...) sits on top and keeps the
wording its users know. This module imports no torch, no YAML and nothing from jobs/ or analysis/.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import json
import math
import reprlib
import types
import typing
from collections.abc import Callable, Mapping
from functools import cache, lru_cache
from typing import Any, Literal, TypeVar

from .errors import ConfigError
from .schema import Config

INT_LIMIT = 2**63  # integers reach torch and numpy as int64
T = TypeVar("T")


class DecodeError(ConfigError):
    """A key or value that does not fit its dataclass field; the message is one line with the fix."""

    def __init__(self, message: str, kind: str, key: str):
        super().__init__(message)
        self.kind = kind
        """What went wrong: type, option, length, finite, range, missing, unknown or mapping."""
        self.key = key
        """The dotted key at fault ('' for the top level)."""


class WrittenError(ValueError):
    """A written value that its field cannot take, raised by a field's reader or a dataclass's __post_init__.

    `decode` words it as one DecodeError line at the field's key (with `at` appended); raised outside `decode`
    it is a plain one-line ValueError."""

    def __init__(self, problem: str, at: str = ""):
        super().__init__(problem)
        self.at = at
        """The key below the field (a reader's) or the dataclass (a __post_init__'s), e.g. 'rows[0]'; '' for
        the field or dataclass itself."""


WRITTEN = "written"
"""The field-metadata entry holding a field's reader (see `written`)."""


def written(reader: Callable[[Any], Any]) -> dict[str, Any]:
    """The metadata of a dataclass field whose written value `reader` turns into plain data of the field's type
    before it is decoded (e.g. a single text into a one-item list): `field(metadata=written(reader))`."""
    return {WRITTEN: reader}


# How errors read, per kind of problem; a front end may replace any entry (see CONFIG_WORDING). Fields:
# where, key, value, type (of the value), expected (the field type in words), size and got (list lengths),
# name (last part of the key), section (the key's parent), names / sorted_names (the keys at this level),
# valid (every dotted key below this level), hint ('did you mean ...? ' or ''), tail ('; did you mean ...?'
# or ''), fix (the hint, else 'fix that value'), dotted_hint (the hint with the near key dotted from the top:
# "did you mean 'shape.nodes'? " or ''), problem (a WrittenError's text). An entry '<kind>_top' words a problem
# at the top level.
WORDING: Mapping[str, str] = {
    "type": "{where}: '{key}' must be {expected}, got {value!r}; fix that value",
    "option": "{where}: '{key}' must be {expected}, got {value!r}; {fix}",
    "length": "{where}: '{key}' must be {expected}, got {got} values; fix that value",
    "finite": "{where}: '{key}' must be a finite number, got {value!r}; fix that value",
    "range": "{where}: '{key}' is {value}, which does not fit a 64-bit integer; give a smaller value",
    "missing": "{where}: '{key}' is missing; add it",
    "unknown": "{where}: unknown key '{key}'; {hint}valid keys: {valid}",
    "mapping": "{where}: '{key}' must be a mapping, got {value!r}; valid keys: {valid}",
    "mapping_top": "{where}: the top level must be a mapping, got {type}; valid keys: {valid}",
    "written": "{where}: '{key}': {problem}",
    "written_top": "{where}: {problem}",
}

# The method's configs word problems by config key, as `--set` users know them (and tests pin them).
CONFIG_WORDING: Mapping[str, str] = {
    "type": "config key '{key}': expected {expected}, got {value!r}; fix the value",
    "option": "config key '{key}': invalid value {value!r}; choose {expected}",
    "length": "config key '{key}': expected {size} values, got {got}; give {expected}",
    "finite": "config key '{key}': expected a finite number, got {value!r}; fix the value",
    "range": "config key '{key}': {value} does not fit a 64-bit integer; give a smaller value",
    "unknown": "unknown config key '{key}'; valid keys in '{section}': {sorted_names}{tail}",
    "unknown_top": "unknown config section '{key}'; valid sections: {names}{tail}",
    "mapping": "config section '{key}': expected a mapping of keys, got {value!r}; valid keys: {names}",
    "mapping_top": "a config must be a mapping of sections, got {type}; sections: {names}",
}


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def dotted_keys(cls: type, prefix: str = "") -> list[str]:
    """Every leaf key of the dataclass `cls`, dotted through nested dataclasses, in declaration order."""
    keys = []
    for f in dataclasses.fields(cls):
        tp = _hints(cls)[f.name]
        keys += dotted_keys(tp, f"{prefix}{f.name}.") if dataclasses.is_dataclass(tp) else [prefix + f.name]
    return keys


def _plural(tp: Any) -> str:  # an element type, in words
    return {int: "integers", float: "numbers", str: "strings", bool: "booleans"}.get(tp, "values")


def describe(tp: Any) -> str:
    """A field type in words: 'an integer', 'one of token, bert', 'a list of 2 numbers', ..."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else describe(a) for a in args)
    if origin is tuple and args[-1] is not Ellipsis:
        return f"a list of {len(args)} {_plural(args[0])}" if len(set(args)) == 1 else f"a list of {len(args)} values"
    if origin in (tuple, list):
        return f"a list of {_plural(args[0])}"
    if origin is dict:
        return f"a mapping of strings to {_plural(args[1])}"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
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


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 3, 8, 8, 120, 120
_SHORT.maxlong = 40


class _Shown:
    """A value as an error line shows it: its repr, cut short past a few levels, items and characters."""

    def __init__(self, value: Any):
        self.value = value

    def __repr__(self) -> str:
        return _SHORT.repr(self.value)

    def __str__(self) -> str:
        return _SHORT.repr(self.value) if not isinstance(self.value, str) else _SHORT.repr(self.value)[1:-1]

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


class _Decoder:
    def __init__(self, where: str, wording: Mapping[str, str]):
        self.where, self.wording = where, wording

    def fail(self, kind: str, key: str, level: str = "", cls: type | None = None, near: str | None = None,
             **facts: Any) -> None:
        """Raise the DecodeError of `kind` at `key`; `cls` is the dataclass at `level` (the keys offered)."""
        names = [f.name for f in dataclasses.fields(cls)] if cls else []
        top = self.wording.get(f"{kind}_top") if cls and not level else None
        did = f"did you mean '{near}'?" if near else ""
        dotted = f"did you mean '{level}.{near}'? " if near and level else did and did + " "
        facts = {"value": None, **facts}
        value_type = type(facts["value"]).__name__
        facts["value"] = _Shown(facts["value"])  # an expanded YAML alias could be millions of items long
        text = (top or self.wording[kind]).format(
            where=self.where, key=key, name=key.rsplit(".", 1)[-1], section=level, type=value_type,
            names=", ".join(names), sorted_names=", ".join(sorted(names)),
            valid=", ".join(dotted_keys(cls, f"{level}." if level else "")) if cls else "",
            hint=did and did + " ", tail=did and "; " + did, fix=did or "fix that value", dotted_hint=dotted, **facts)
        raise DecodeError(text, kind, key)

    def node(self, cls: type, data: Any, key: str) -> Any:
        """An instance of the dataclass `cls` from the mapping `data` found at `key`."""
        if not isinstance(data, dict):
            self.fail("mapping", key, key, cls, value=data)
        names = [f.name for f in dataclasses.fields(cls)]
        dot = f"{key}." if key else ""
        for name in data:
            if name not in names:
                near = difflib.get_close_matches(str(name), names, n=1)
                self.fail("unknown", dot + str(name), key, cls, near[0] if near else None, value=data[name])
        for f in dataclasses.fields(cls):
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required and f.name not in data:
                self.fail("missing", dot + f.name, key, cls)
        hints, fields = _hints(cls), {f.name: f for f in dataclasses.fields(cls)}
        built = {}
        for name, value in data.items():
            reader = fields[name].metadata.get(WRITTEN)
            if reader is not None:
                value = self.written(dot + name, functools.partial(reader, value))
            built[name] = self.value(dot + name, value, hints[name])
        return self.written(key, functools.partial(cls, **built))

    def written(self, key: str, make: Callable[[], Any]) -> Any:
        """`make()`, its WrittenError worded as a DecodeError at `key` (plus the error's own `at`)."""
        try:
            return make()
        except WrittenError as err:
            at = ".".join(k for k in (key, err.at) if k).replace(".[", "[")
            self.fail("written" if at else "written_top", at, problem=str(err))

    @staticmethod
    def item_key(key: str, index: int, item: Any, tp: Any) -> str:
        """The key of a list's item in errors: a mapping of its own by its index (rows[2]), or by its name where
        its dataclass sets NAMED_BY (columns.top1: a reader made the list from a mapping keyed by that field)."""
        if not dataclasses.is_dataclass(tp):
            return key
        named_by = getattr(tp, "NAMED_BY", None)
        if named_by and isinstance(item, dict) and isinstance(item.get(named_by), str):
            return f"{key}.{item[named_by]}"
        return f"{key}[{index}]"

    def value(self, key: str, value: Any, tp: Any) -> Any:
        """`value` checked against the field type `tp`, in canonical form (tuples, floats, nested dataclasses)."""
        if tp is Any:  # checked where it acts (a sweep's override values become config values)
            return value
        tp = {list: list[Any], tuple: tuple[Any, ...], dict: dict[str, Any]}.get(tp, tp)
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if dataclasses.is_dataclass(tp):
            return self.node(tp, value, key)
        if origin is Literal:
            if not any(value == a and type(value) is type(a) for a in args):
                near = difflib.get_close_matches(value, [str(a) for a in args], n=1) if isinstance(value, str) else []
                self.fail("option", key, near=near[0] if near else None, value=value, expected=describe(tp))
            return value
        if origin in (typing.Union, types.UnionType):
            inner = [a for a in args if a is not type(None)]
            if value is None and len(inner) < len(args):
                return None
            if len(inner) > 1 and all(a in (bool, int, float, str) for a in inner):  # int | float: the first that fits
                fits = [a for a in inner if scalar_matches(value, a)]
                if not fits:
                    self.fail("type", key, value=value, expected=describe(tp))
                return self.value(key, value, fits[0])
            if len(inner) != 1:
                raise TypeError(f"unsupported field type {tp} for {key}: only Optional unions and unions of "
                                "scalars decode")
            return self.value(key, value, inner[0])
        if origin in (tuple, list):
            if not isinstance(value, (list, tuple)):
                self.fail("type", key, value=value, expected=describe(tp))
            if origin is tuple and args[-1] is not Ellipsis:
                if len(value) != len(args):
                    self.fail("length", key, value=value, expected=describe(tp), size=len(args), got=len(value))
                return tuple(self.value(key, v, t) for v, t in zip(value, args))
            items = [self.value(self.item_key(key, i, v, args[0]), v, args[0]) for i, v in enumerate(value)]
            return tuple(items) if origin is tuple else items
        if origin is dict:
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                self.fail("type", key, value=value, expected=describe(tp))
            # a string value written as a number (NCCL_DEBUG_LEVEL: 1) means its text
            return {k: self.value(f"{key}.{k}", str(v) if args[1] is str and scalar_matches(v, float) else v, args[1])
                    for k, v in value.items()}
        if tp in (bool, int, float, str):
            if not scalar_matches(value, tp):
                self.fail("type", key, value=value, expected=describe(tp))
            if tp is int and not -INT_LIMIT <= value < INT_LIMIT:
                self.fail("range", key, value=value)
            if tp is float:
                number = float(value) if abs(value) < 2**1000 or isinstance(value, float) else math.inf
                if not math.isfinite(number):
                    self.fail("finite", key, value=value)
                return number
            return value
        raise TypeError(f"unsupported field type {tp} for {key}")


def decode(cls: type[T], data: Any, where: str, wording: Mapping[str, str] | None = None) -> T:
    """The frozen dataclass `cls` built from plain `data` (e.g. a parsed YAML mapping), every value type-checked.

    Missing keys take the field defaults; unknown keys, wrong types, options outside a `Literal`, wrong list
    lengths, non-finite floats and integers beyond 64 bits raise one DecodeError line that starts with `where`
    (a file path, say). `wording` replaces entries of WORDING. The dataclasses' own __post_init__ checks run
    as they are built.
    """
    return _Decoder(where, {**WORDING, **(wording or {})}).node(cls, data, "")


def encode(obj: Any) -> Any:
    """Plain, JSON- and YAML-safe data of a dataclass tree (tuples become lists); `decode` reverses it."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [encode(v) for v in obj]
    if isinstance(obj, dict):
        return {k: encode(v) for k, v in obj.items()}
    return obj


# ---------------------------------------------------------------------------------------- configs


def valid_keys() -> list[str]:
    """Every dotted key a config accepts, e.g. 'optim.lr'."""
    return dotted_keys(Config)


def config_from_dict(data: dict | None) -> Config:
    """A validated Config from a nested dict; missing keys take the defaults (the paper's values)."""
    return decode(Config, data or {}, "config", CONFIG_WORDING)


def config_to_dict(cfg: Config) -> dict:
    """A nested, JSON- and YAML-safe dict (tuples become lists)."""
    return encode(cfg)


def apply_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """Apply dotted overrides {'optim.lr': 1e-3} on top of `cfg`, validating each key and value."""
    data = config_to_dict(cfg)
    keys = valid_keys()
    for dotted, value in overrides.items():
        if dotted not in keys:
            section = dotted.split(".", 1)[0]
            near = [k for k in sorted(keys) if k.startswith(section + ".")]
            if not near:
                raise ConfigError(f"unknown config key '{dotted}': no section '{section}'; valid sections: "
                                  f"{', '.join(data)}")
            close = difflib.get_close_matches(dotted, near, n=1)
            raise ConfigError(f"unknown config key '{dotted}'; valid keys: {', '.join(near)}"
                              + (f"; did you mean '{close[0]}'?" if close else ""))
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
