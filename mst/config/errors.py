"""The one exception type for bad configuration values, and the checks that raise it."""

import typing
from functools import cache
from typing import Literal


class ConfigError(ValueError):
    """A user-facing configuration problem. Its message is one line: what is wrong and how to fix it."""


def check(ok: bool, key: str, problem: str, fix: str) -> None:
    """Raise a ConfigError for `key` unless `ok`."""
    if not ok:
        raise ConfigError(f"config key '{key}': {problem}; {fix}")


def check_prob(value: float, key: str) -> None:
    check(0.0 <= value <= 1.0, key, f"a probability must lie in [0, 1], got {value}", f"e.g. --set {key}=0.5")


def check_positive(value: float, key: str, example: str = "1") -> None:
    check(value > 0, key, f"must be > 0, got {value}", f"e.g. --set {key}={example}")


def check_non_negative(value: float, key: str) -> None:
    check(value >= 0, key, f"must be >= 0, got {value}", f"e.g. --set {key}=0")


@cache
def _options(cls: type) -> dict[str, tuple]:
    hints = typing.get_type_hints(cls)
    return {name: typing.get_args(tp) for name, tp in hints.items() if typing.get_origin(tp) is Literal}


def check_options(section: object, name: str) -> None:
    """Every `Literal` field of the config section `section` (called `name`) holds one of its options, so a
    section built in code fails like one read from a file; the choices are listed from the type."""
    for key, options in _options(type(section)).items():
        value = getattr(section, key)
        check(value in options, f"{name}.{key}", f"invalid value {value!r}",
              f"choose one of {', '.join(map(str, options))}")
