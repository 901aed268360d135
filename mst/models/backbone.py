"""ViT backbones from timm, with a [MASK] token after the patch projection and the last block's
class-token attention taken in the same forward pass."""

from __future__ import annotations

from dataclasses import dataclass

import timm
import torch
from torch import nn

from ..compat import attention

# arch -> the timm model it builds; its size (width, depth, heads) is the config's ARCH_SIZES
_REGISTRY: dict[str, str] = {
    "vit_test": "vit_tiny_patch16_224",      # seconds-long tests
    "vit_smoke": "vit_tiny_patch16_224",     # Fashion-MNIST on a CPU
    "deit_small": "vit_small_patch16_224",   # the paper's DeiT-S = ViT-S/16
    "vit_base": "vit_base_patch16_224",
}


def backbone_names() -> list[str]:
    return sorted(_REGISTRY)


@dataclass
class BackboneOutput:
    cls: torch.Tensor                        # [B, D] final-norm class token
    patches: torch.Tensor                    # [B, L, D] final-norm patch tokens
    attn: torch.Tensor | None = None         # [B, H, L] last block's class-token attention over patches
    last_cls: torch.Tensor | None = None     # [B, n, D] class tokens of the last n blocks, final-normed


class MaskedViT(nn.Module):
    """A timm VisionTransformer whose patch embeddings can be masked before the position embeddings."""

    def __init__(self, vit: nn.Module):
        super().__init__()
        self.vit = vit
        self.embed_dim: int = vit.embed_dim
        self.num_heads: int = vit.blocks[-1].attn.num_heads
        self.patch_size: int = vit.patch_embed.patch_size[0]
        self.depth: int = len(vit.blocks)
        # zero-initialised learned [MASK] vector, one per model
        self.mask_token = nn.Parameter(torch.zeros(1, 1, self.embed_dim))

    def embed(self, x: torch.Tensor, mask: torch.Tensor | None, replace: str,
              generator: torch.Generator | None) -> torch.Tensor:
        """Pixels [B, 3, H, W] -> tokens with class token and positions [B, 1 + L, D]."""
        tokens = self.vit.patch_embed(x)                      # [B, h, w, D] (dynamic size, NHWC)
        B, h, w, D = tokens.shape
        if mask is not None:
            flat = tokens.reshape(B, h * w, D)
            flat = replace_masked(flat, mask, self.mask_token, replace, generator)
            tokens = flat.reshape(B, h, w, D)
        x = self.vit._pos_embed(tokens)                       # [B, 1 + L, D]
        return self.vit.norm_pre(self.vit.patch_drop(x))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, return_attn: bool = False,
                n_last: int = 0, replace: str = "token", generator: torch.Generator | None = None
                ) -> BackboneOutput:
        x = self.embed(x, mask, replace, generator)
        blocks = self.vit.blocks
        last_cls = []
        for i, blk in enumerate(blocks):
            if return_attn and i == self.depth - 1:
                x, attn = block_with_cls_attention(blk, x)
            else:
                x = blk(x)
            if i >= self.depth - n_last:
                last_cls.append(x[:, 0])
        x = self.vit.norm(x)
        stacked = None
        if n_last:
            stacked = self.vit.norm(torch.stack(last_cls, dim=1))   # [B, n, D]
        return BackboneOutput(cls=x[:, 0], patches=x[:, 1:], attn=attn if return_attn else None,
                              last_cls=stacked)


def replace_masked(tokens: torch.Tensor, mask: torch.Tensor, mask_token: torch.Tensor, replace: str,
                   generator: torch.Generator | None) -> torch.Tensor:
    """tokens [B, L, D], mask [B, L] bool -> tokens with masked positions replaced.

    token: every masked position becomes the [MASK] vector.
    bert:  80 % [MASK], 10 % a random patch embedding from the batch, 10 % unchanged.
    """
    m = mask.unsqueeze(-1)                                    # [B, L, 1]
    if replace == "token":
        return torch.where(m, mask_token.to(tokens.dtype), tokens)
    B, L, D = tokens.shape
    u = torch.rand(B, L, generator=generator, device=mask.device)
    src = torch.randint(0, B * L, (B, L), generator=generator, device=mask.device)
    random_tok = tokens.reshape(B * L, D)[src.reshape(-1)].reshape(B, L, D)
    out = torch.where((mask & (u < 0.8)).unsqueeze(-1), mask_token.to(tokens.dtype), tokens)
    return torch.where((mask & (u >= 0.8) & (u < 0.9)).unsqueeze(-1), random_tok, out)


def block_with_cls_attention(blk: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One timm Block on x [B, N, D], keeping fused attention, plus the class token's attention over the
    patches [B, H, N - 1] computed from its query row alone (O(N), no second pass, no N x N matrix)."""
    a = blk.attn
    h = blk.norm1(x)
    B, N, _ = h.shape
    qkv = a.qkv(h).reshape(B, N, 3, a.num_heads, a.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)                                   # [B, H, N, hd]
    q, k = a.q_norm(q), a.k_norm(k)
    y = attention(q, k, v, dropout_p=a.attn_drop.p if a.training else 0.0)
    with torch.no_grad():
        cls_attn = ((q[:, :, :1] * a.scale) @ k.transpose(-2, -1)).softmax(dim=-1)   # [B, H, 1, N]
    y = a.norm(y.transpose(1, 2).reshape(B, N, a.attn_dim))
    y = a.proj_drop(a.proj(y))
    x = x + blk.drop_path1(blk.ls1(y))
    x = x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))
    return x, cls_attn[:, :, 0, 1:].float()


def build_backbone(model_cfg, img_size: int = 224, drop_path: float | None = None) -> MaskedViT:
    """The registered backbone for `model_cfg.arch`, native at `img_size`, accepting any multiple of the patch;
    non-zero `embed_dim`, `depth` or `num_heads` in the config replace the arch's own."""
    if model_cfg.arch not in _REGISTRY:
        raise ValueError(f"unknown arch '{model_cfg.arch}'; choose one of {', '.join(backbone_names())}")
    width, depth, heads = model_cfg.size
    vit = timm.create_model(
        _REGISTRY[model_cfg.arch], pretrained=False, num_classes=0, img_size=img_size,
        patch_size=model_cfg.patch_size, embed_dim=width, depth=depth, num_heads=heads,
        drop_path_rate=model_cfg.drop_path if drop_path is None else drop_path, dynamic_img_size=True)
    return MaskedViT(vit)
