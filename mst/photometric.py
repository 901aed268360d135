"""Device side of the split pipeline: the photometric ops of every view, batched, inside the training step.

Loader workers hand over uint8 crops (`mst.data.crops`: decode, RandomResizedCrop, flip) and each sample's seed;
here colour jitter, grayscale, Gaussian blur and solarisation run as batched tensor ops on the crops' device
(CUDA or ROCm through torch.cuda, or the CPU in the main process), then normalisation. Every random parameter
comes from the sample's own seed, in `mst.augment_batch`'s layout, so a sample's views depend on (seed, epoch,
index) alone and match the batched backend's draws for the same seed.
"""

from __future__ import annotations

import torch

from .augment_batch import draw_uniforms, normalise, photometric
from .data.crops import view_kinds


class BatchPhotometric:
    """uint8 crops (one [B, 3, S, S] tensor per view, any device) + one seed per sample -> normalised float
    crops, same shapes and device."""

    def __init__(self, aug_cfg):
        self.cfg = aug_cfg
        self.n_views = 2 + aug_cfg.n_local
        self.gen = torch.Generator()  # reseeded per sample: only its seed matters

    def __call__(self, crops: list[torch.Tensor], seeds, return_params: bool = False):
        c = self.cfg
        if len(crops) != self.n_views or any(t.dtype != torch.uint8 for t in crops):
            raise ValueError(f"expected {self.n_views} uint8 crop tensors, got {len(crops)} "
                             f"({', '.join(str(t.dtype) for t in crops)})")
        B = crops[0].shape[0]
        u = draw_uniforms(self.gen, seeds, self.n_views)                      # [B, V, WIDTH]
        blur, solarize = c.blur_prob, c.solarize_prob
        out, params = [], []
        for views, size, _ in view_kinds(c):
            V = views.stop - views.start
            blur_p = blur[:2] if views.start == 0 else blur[2:] * V
            solarize_p = solarize[:2] if views.start == 0 else solarize[2:] * V
            x = torch.cat(crops[views]).reshape(V * B, 3, size * size).float().mul_(1 / 255)  # view-major
            rows = u[:, views].transpose(0, 1).reshape(V * B, -1)
            p = photometric(x, rows, c, size, B, blur_p, solarize_p)
            out += list(normalise(x, c).reshape(V, B, 3, size, size))
            params.append({k: v.reshape(V, B, *v.shape[1:]).transpose(0, 1) for k, v in p.items()})
        if not return_params:
            return out
        return out, {k: torch.cat([p[k] for p in params], 1) for k in params[0]}  # each [B, V, ...]
