"""Per-iteration schedules: linear warm-up then cosine, evaluated at a step (no big arrays kept)."""

from __future__ import annotations

import math


def cosine(step: int, total: int, start: float, end: float, warmup: int = 0, warmup_start: float = 0.0) -> float:
    """Linear from `warmup_start` to `start` over `warmup` steps, then cosine from `start` to `end` at `total`."""
    if step < warmup:
        return warmup_start + (start - warmup_start) * step / warmup
    span = max(total - warmup, 1)
    t = min(max(step - warmup, 0), span) / span
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * t))


def teacher_temperature(epoch: int, warmup_temp: float, temp: float, warmup_epochs: int) -> float:
    """Linear warm-up of the teacher temperature over `warmup_epochs`, then constant."""
    if epoch >= warmup_epochs or warmup_epochs == 0:
        return temp
    return warmup_temp + (temp - warmup_temp) * epoch / warmup_epochs
