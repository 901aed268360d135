"""The split pipeline (`augment.backend: split`): crops in the loader workers, photometric ops on the device.

Worker side (`CroppedDataset` items, `CropCollate`): decode, RandomResizedCrop and flip every view of a sample,
as uint8. The crop boxes and flips come from the sample's row of uniforms in `mst.augment.batched`'s layout (so
a sample gets the same boxes as with the batched backend). A JPEG is decoded at a reduced size (PIL's draft
mode, a DCT-domain 1/2, 1/4 or 1/8) when every crop of the sample still has at least as many source pixels as
output pixels at that size; the crops are then resampled with PIL's antialiased bicubic filter (what
torchvision's bicubic resize reproduces).

Device side (`BatchPhotometric`, inside the training step): colour jitter, grayscale, Gaussian blur and
solarisation as batched tensor ops on the crops' device (CUDA or ROCm through torch.cuda, or the CPU in the
main process), then normalisation. Every random parameter comes from the sample's own seed, in
`mst.augment.batched`'s layout, so a sample's views depend on (seed, epoch, index) alone and match the batched
backend's draws for the same seed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mst.data.decode import open_image

from .batched import FLIP, crop_boxes, draw_uniforms, normalise, photometric

BICUBIC = Image.Resampling.BICUBIC
FLIP_LR = Image.Transpose.FLIP_LEFT_RIGHT


def view_kinds(aug_cfg) -> list[tuple[slice, int, tuple[float, float]]]:
    """(views, output side, area range) of the global and the local crops, in view order."""
    kinds = [(slice(0, 2), aug_cfg.global_size, tuple(aug_cfg.global_scale))]
    if aug_cfg.n_local:
        kinds.append((slice(2, 2 + aug_cfg.n_local), aug_cfg.local_size, tuple(aug_cfg.local_scale)))
    return kinds


def _open(source) -> Image.Image:
    """A lazily decoded PIL image: a path (JPEG, PNG, ...) or a uint8 tensor [C, H, W]."""
    if isinstance(source, (str, Path)):
        return open_image(source)  # its size checked before decoding: a bomb is refused, naming the file
    array = source.permute(1, 2, 0).numpy()
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)


def geometric_crops(source, u: torch.Tensor, aug_cfg) -> list[torch.Tensor]:
    """source (path or uint8 [C, H, W]), u [V, WIDTH] float64 -> V uint8 crops [3, S, S] (cropped, resized,
    flipped). Raises what PIL raises for an unreadable file (OSError, ValueError, SyntaxError)."""
    with _open(source) as image:
        width, height = image.size
        boxes = [(views, size, crop_boxes(u[views], height, width, scale)) for views, size, scale in
                 view_kinds(aug_cfg)]
        # the largest reduction every crop allows: source pixels per output pixel along the shorter box side
        allowed = min(float(box[:, 2:].min()) / size for _, size, box in boxes)
        if image.format == "JPEG" and allowed >= 2:
            image.draft("RGB", (math.ceil(width / allowed), math.ceil(height / allowed)))
        factor_x, factor_y = image.size[0] / width, image.size[1] / height
        rgb = image.convert("RGB")
    flips = (u[:, FLIP] < aug_cfg.flip_prob).tolist()
    crops: list[torch.Tensor] = []
    for views, size, box in boxes:
        for v, (top, left, h, w) in zip(range(views.start, views.stop), box.tolist()):
            crop = rgb.resize((size, size), BICUBIC, box=(left * factor_x, top * factor_y,
                                                          (left + w) * factor_x, (top + h) * factor_y))
            if flips[v]:
                crop = crop.transpose(FLIP_LR)
            crops.append(torch.from_numpy(np.array(crop)).permute(2, 0, 1))     # [3, S, S] uint8
    return crops


class CropCollate:
    """DataLoader collate_fn for `CroppedDataset` items: (list of V uint8 tensors [B, 3, S, S], labels [B],
    sample seeds [B] int64, number of unreadable images left out []). Picklable for worker processes."""

    def __call__(self, items):
        kept = [item for item in items if item is not None]
        if not kept:
            raise RuntimeError(f"all {len(items)} images of a batch are unreadable (see the warnings above); "
                               "check the data folder")
        crops = [torch.stack([item[0][v] for item in kept]) for v in range(len(kept[0][0]))]
        labels = torch.tensor([item[1] for item in kept], dtype=torch.int64)
        seeds = torch.tensor([item[2] for item in kept], dtype=torch.int64)
        return crops, labels, seeds, torch.tensor(len(items) - len(kept))


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
