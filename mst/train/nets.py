"""Student and teacher networks: backbone + DINO head (+ decoder for the student), EMA by name."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..models import DINOHead, build_backbone, build_decoder


def _head(cfg, embed_dim: int) -> DINOHead:
    m = cfg.model
    return DINOHead(embed_dim, m.out_dim, m.head_hidden_dim, m.head_bottleneck_dim, m.head_layers,
                    m.head_use_bn, m.norm_last_layer)


@contextlib.contextmanager
def frozen_bn_stats(module: nn.Module):
    """BatchNorm layers normalise with batch statistics but leave their running statistics alone
    (local crops must not update them: the appendix updates BN statistics from global views only)."""
    saved = []
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            saved.append((m, m.momentum))
            m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in saved:
            m.momentum = momentum


class Student(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.backbone = build_backbone(cfg.model, cfg.augment.global_size)
        self.head = _head(cfg, self.backbone.embed_dim)
        # no decoder when restoration is off: a pure DINO step pays nothing for it
        self.decoder = (build_decoder(cfg.decoder, self.backbone.embed_dim, self.backbone.patch_size)
                        if cfg.loss.restore_weight > 0 else None)
        self.replace = cfg.mask.replace

    def forward(self, globals_: torch.Tensor, locals_: torch.Tensor | None, mask: torch.Tensor | None,
                generator: torch.Generator | None = None):
        """globals_ [2B, 3, G, G] (masked by `mask` [2B, L]), locals_ [nB, 3, S, S] ->
        (logits of every crop [(2 + n)B, K], restored globals [2B, 3, G, G] or None)."""
        out = self.backbone(globals_, mask=mask, replace=self.replace, generator=generator)
        # the head's MLP runs per crop size (its BatchNorm, if any, takes its statistics from globals only);
        # its 65536-wide weight-normed last layer runs once, on every crop's bottleneck: a second call would
        # recompute the normalised weight and its backward, which cost more than the matmul itself
        bottlenecks = [self.head.bottleneck(out.cls)]                        # [2B, D]
        restored = None
        if self.decoder is not None:
            p = self.backbone.patch_size
            grid = (globals_.shape[2] // p, globals_.shape[3] // p)
            restored = self.decoder(out.patches, grid)
        if locals_ is not None:
            local_cls = self.backbone(locals_).cls
            with frozen_bn_stats(self.head):
                bottlenecks.append(self.head.bottleneck(local_cls))        # [nB, D]
        return self.head.last_layer(torch.cat(bottlenecks)), restored     # [(2 + n)B, K]


class Teacher(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.backbone = build_backbone(cfg.model, cfg.augment.global_size, drop_path=0.0)
        self.head = _head(cfg, self.backbone.embed_dim)
        self.requires_grad_(False)

    @torch.no_grad()
    def forward(self, globals_: torch.Tensor, with_attention: bool):
        """globals_ [2B, 3, G, G] -> (logits [2B, K], class-token attention [2B, H, L] or None)."""
        out = self.backbone(globals_, return_attn=with_attention)
        return self.head(out.cls), out.attn


def copy_student_into_teacher(student: nn.Module, teacher: nn.Module) -> None:
    student_state = student.state_dict()
    teacher.load_state_dict({k: student_state[k] for k in teacher.state_dict()})


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """teacher <- m * teacher + (1 - m) * student, matching parameters BY NAME (the student owns extra
    parameters, e.g. the decoder, so a positional zip would pair the wrong tensors)."""
    student_params = dict(student.named_parameters())
    for name, p_t in teacher.named_parameters():
        p_t.mul_(momentum).add_(student_params[name].detach(), alpha=1.0 - momentum)
