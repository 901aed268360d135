"""Configuration: frozen dataclasses per concern, validation with fix-it messages, overrides, hashing."""

from .codec import apply_overrides, config_from_dict, config_hash, config_to_dict, dict_hash, valid_keys
from .errors import ConfigError
from .recipes import linear_probe_lr
from .schema import (
    AugmentConfig,
    Config,
    DataConfig,
    DecoderConfig,
    EvalConfig,
    LossConfig,
    MaskConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
)

__all__ = [
    "AugmentConfig", "Config", "ConfigError", "DataConfig", "DecoderConfig", "EvalConfig", "LossConfig",
    "MaskConfig", "ModelConfig", "OptimConfig", "TrainConfig", "apply_overrides", "config_from_dict",
    "config_hash", "config_to_dict", "dict_hash", "linear_probe_lr", "valid_keys",
]
