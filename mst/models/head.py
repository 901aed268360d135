"""DINO projection head: MLP -> L2-normalised bottleneck -> weight-normed linear layer."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class DINOHead(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 n_layers: int = 3, use_bn: bool = False, norm_last_layer: bool = True):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (n_layers - 1) + [bottleneck_dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(dims)):
            layers.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                if use_bn:
                    layers.append(nn.BatchNorm1d(b))
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        self.apply(self._init)
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        self.last_layer.parametrizations.weight.original0.data.fill_(1.0)   # weight-norm gain g
        if norm_last_layer:
            self.last_layer.parametrizations.weight.original0.requires_grad = False

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:   # [B, in_dim] -> [B, bottleneck_dim], unit rows
        return F.normalize(self.mlp(x), dim=-1, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # [B, in_dim] -> [B, out_dim]
        return self.last_layer(self.bottleneck(x))
