"""Values a config implies under a named recipe rather than sets directly."""

from __future__ import annotations

from .schema import EvalConfig

APPENDIX_LINEAR_LR = 0.00024   # appendix §5, as printed
DINO_LINEAR_LR = 0.001         # DINO's linear evaluation, per 256 images


def linear_probe_lr(e: EvalConfig) -> float:
    """The linear probe's base lr under e.linear_recipe."""
    if e.linear_recipe == "appendix":
        return APPENDIX_LINEAR_LR
    if e.linear_recipe == "dino":
        return DINO_LINEAR_LR * e.linear_batch_size / 256
    return e.linear_lr
