"""The DINO cross-view loss with its centre, and the L1 restoration loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import distributed


class DINOLoss(nn.Module):
    """Cross-entropy between the teacher's centred, sharpened softmax on each global crop and the student's
    log-softmax on every other crop (pairs with the same view are skipped)."""

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9):
        super().__init__()
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(self, student_out: list[torch.Tensor], teacher_out: list[torch.Tensor],
                teacher_temp: float) -> torch.Tensor:
        """student_out: one [B, K] per crop (globals first); teacher_out: one [B, K] per global crop."""
        targets = [F.softmax((t - self.center) / teacher_temp, dim=-1).detach() for t in teacher_out]
        logp = [F.log_softmax(s.float() / self.student_temp, dim=-1) for s in student_out]
        total, pairs = 0.0, 0
        for i, q in enumerate(targets):
            for v, lp in enumerate(logp):
                if v == i:
                    continue
                total = total + (-q * lp).sum(dim=-1).mean()
                pairs += 1
        self.update_center(torch.cat(teacher_out))
        return total / pairs

    @torch.no_grad()
    def update_center(self, teacher_logits: torch.Tensor) -> None:
        """EMA of the batch mean of the teacher's logits, the mean taken over every rank's batch."""
        batch_sum = teacher_logits.float().sum(dim=0, keepdim=True)
        count = torch.tensor([float(teacher_logits.shape[0])], device=batch_sum.device)
        distributed.all_reduce_sum(batch_sum)
        distributed.all_reduce_sum(count)
        self.center.mul_(self.center_momentum).add_(batch_sum / count, alpha=1 - self.center_momentum)


def patch_mask_to_pixels(mask: torch.Tensor, grid: tuple[int, int], patch: int) -> torch.Tensor:
    """[B, L] bool -> [B, 1, h*p, w*p] float, 1 where the pixel belongs to a masked patch."""
    B = mask.shape[0]
    m = mask.reshape(B, 1, *grid).float()
    return m.repeat_interleave(patch, dim=2).repeat_interleave(patch, dim=3)


def restoration_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, patch: int,
                     mode: str = "image") -> torch.Tensor:
    """Mean absolute error between the decoded crop and the crop fed in (normalised pixels).

    image:  over every pixel (MST: the whole image is restored).
    masked: over the masked patches' pixels only (BERT style); 0 when nothing is masked.
    """
    err = (pred.float() - target.float()).abs()               # [B, 3, H, W]
    if mode == "image":
        return err.mean()
    if mask is None:
        return err.sum() * 0.0
    grid = (target.shape[2] // patch, target.shape[3] // patch)
    weight = patch_mask_to_pixels(mask, grid, patch)           # [B, 1, H, W]
    return (err * weight).sum() / (weight.sum() * err.shape[1]).clamp_min(1.0)
