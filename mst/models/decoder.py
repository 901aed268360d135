"""Global image decoders: restore the whole crop [B, 3, H, W] from the student's patch tokens [B, L, D]."""

from __future__ import annotations

import torch
from torch import nn


def _norm(kind: str, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "bn" else nn.Identity()


def tokens_to_map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """[B, L, D] -> [B, D, h, w]."""
    B, _, D = tokens.shape
    return tokens.transpose(1, 2).reshape(B, D, *grid)


class PixelShuffleDecoder(nn.Module):
    """3x3 conv + norm + GELU, then a 1x1 conv to p*p*3 channels and a pixel shuffle (cheap)."""

    def __init__(self, embed_dim: int, patch_size: int, hidden_dim: int = 256, norm: str = "bn"):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(embed_dim, hidden_dim, 3, padding=1, bias=norm != "bn"), _norm(norm, hidden_dim), nn.GELU(),
            nn.Conv2d(hidden_dim, patch_size * patch_size * 3, 1), nn.PixelShuffle(patch_size))

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return self.body(tokens_to_map(tokens, grid))            # [B, 3, h*p, w*p]


class DeconvDecoder(nn.Module):
    """log2(p) stride-2 transposed convs (channels halving from hidden_dim) + norm + GELU, then a 3x3 conv."""

    def __init__(self, embed_dim: int, patch_size: int, hidden_dim: int = 256, norm: str = "bn"):
        super().__init__()
        stages = patch_size.bit_length() - 1
        if 2 ** stages != patch_size:
            raise ValueError(f"decoder.kind=deconv needs a power-of-two patch size, got {patch_size}; "
                             "use decoder.kind=pixelshuffle")
        layers: list[nn.Module] = []
        c_in = embed_dim
        for i in range(stages):
            c_out = max(hidden_dim >> i, 16)
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=norm != "bn"),
                       _norm(norm, c_out), nn.GELU()]
            c_in = c_out
        layers.append(nn.Conv2d(c_in, 3, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return self.body(tokens_to_map(tokens, grid))


def build_decoder(decoder_cfg, embed_dim: int, patch_size: int) -> nn.Module:
    cls = {"pixelshuffle": PixelShuffleDecoder, "deconv": DeconvDecoder}[decoder_cfg.kind]
    return cls(embed_dim, patch_size, decoder_cfg.hidden_dim, decoder_cfg.norm)
