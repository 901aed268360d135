"""Gradient clipping: per parameter tensor (DINO's rule, the default) or over the global norm."""

from __future__ import annotations

from collections.abc import Iterable

import torch

EPS = 1e-6   # DINO's guard in clip / (norm + eps)


@torch.no_grad()
def clip_per_parameter(params: Iterable[torch.nn.Parameter], max_norm: float) -> None:
    """Each tensor whose gradient's L2 norm exceeds `max_norm` is scaled by max_norm / (norm + 1e-6);
    the others are left as they are."""
    for p in params:
        if p.grad is None:
            continue
        scale = max_norm / (float(p.grad.norm(2)) + EPS)
        if scale < 1.0:
            p.grad.mul_(scale)


def clip_gradients(params: Iterable[torch.nn.Parameter], max_norm: float, mode: str) -> None:
    """mode `per_param`: clip_per_parameter; `global`: torch's clip over the norm of all gradients together.
    max_norm 0 disables clipping."""
    if not max_norm:
        return
    if mode == "per_param":
        clip_per_parameter(params, max_norm)
    elif mode == "global":
        torch.nn.utils.clip_grad_norm_(list(params), max_norm)
    else:
        raise ValueError(f"unknown clip mode '{mode}'; choose per_param or global")
