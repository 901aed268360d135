"""Per-iteration schedules with DINO's spacing, evaluated at a step (no big arrays kept).

DINO lays a warm-up out as `linspace(start, end, W)`: W values, the first at `start` and the LAST (index W - 1)
already at `end`. So step s < W of a warm-up sits at start + (end - start) * s / (W - 1), and W = 1 is the single
value `start`. After the warm-up the schedule continues from index W.
"""

from __future__ import annotations

import math


def _linspace_at(step: int, n: int, start: float, end: float) -> float:
    """Value `step` (0 <= step < n) of n evenly spaced values from `start` to `end`, both included."""
    if n == 1:
        return start
    return start + (end - start) * step / (n - 1)


def cosine(step: int, total: int, start: float, end: float, warmup: int = 0, warmup_start: float = 0.0) -> float:
    """`warmup` evenly spaced values from `warmup_start` to `start` (reached at step warmup - 1), then a cosine
    from `start` (at step `warmup`) over the remaining total - warmup steps towards `end`; clamped at `end`
    from step `total` on."""
    if step < warmup:
        return _linspace_at(step, warmup, warmup_start, start)
    span = max(total - warmup, 1)
    t = min(max(step - warmup, 0), span) / span
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * t))


def teacher_temperature(epoch: int, warmup_temp: float, temp: float, warmup_epochs: int) -> float:
    """`warmup_epochs` evenly spaced values from `warmup_temp` to `temp` (reached at epoch warmup_epochs - 1),
    then constant."""
    if epoch >= warmup_epochs:
        return temp
    return _linspace_at(epoch, warmup_epochs, warmup_temp, temp)
