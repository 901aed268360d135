"""Which student patches to mask: pure functions of the teacher's attention and a torch.Generator."""

from __future__ import annotations

import torch


def _keep_eligible(eligible: torch.Tensor, prob: float, generator: torch.Generator | None) -> torch.Tensor:
    """Each eligible patch is masked independently with probability `prob`."""
    draw = torch.rand(eligible.shape, generator=generator, device=eligible.device)
    return eligible & (draw < prob)


def attention_mask(attn: torch.Tensor, ratio: float, prob: float,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """attn [B, L] (or [B, H, L], averaged over heads) -> bool mask [B, L].

    The round(ratio * L) lowest-attention patches of each image are eligible; each is masked with
    probability `prob`. High-attention (foreground) patches are never masked.
    """
    if attn.dim() == 3:
        attn = attn.mean(dim=1)
    B, L = attn.shape
    n = round(ratio * L)
    eligible = torch.zeros(B, L, dtype=torch.bool, device=attn.device)
    if n:
        lowest = attn.topk(n, dim=1, largest=False).indices    # [B, n]
        eligible.scatter_(1, lowest, True)
    return _keep_eligible(eligible, prob, generator)


def random_mask(batch: int, length: int, prob: float, generator: torch.Generator | None = None,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """Every patch is eligible: each is masked independently with probability `prob` -> bool mask [B, L]."""
    eligible = torch.ones(batch, length, dtype=torch.bool, device=device)
    return _keep_eligible(eligible, prob, generator)


def masks_anything(strategy: str, ratio: float, prob: float) -> bool:
    """Whether `strategy` with these numbers can mask a patch at all."""
    if strategy == "attention":
        return ratio > 0 and prob > 0
    return strategy == "random" and prob > 0


def make_mask(strategy: str, attn: torch.Tensor | None, batch: int, length: int, ratio: float, prob: float,
              generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> torch.Tensor | None:
    """The mask for one global crop under `strategy` (attention | random | none); None means no masking.

    `ratio` (the eligible fraction) applies to `attention` only: under `random` every patch is eligible."""
    if not masks_anything(strategy, ratio, prob):
        return None
    if strategy == "attention":
        if attn is None:
            raise ValueError("attention masking needs the teacher's class-token attention")
        return attention_mask(attn, ratio, prob, generator)
    if strategy == "random":
        return random_mask(batch, length, prob, generator, device)
    raise ValueError(f"unknown mask strategy '{strategy}'; choose attention, random or none")
