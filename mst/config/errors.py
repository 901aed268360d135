"""The one exception type for bad configuration values."""


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
