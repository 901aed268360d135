"""Worker side of the split pipeline: decode, RandomResizedCrop and flip every view of a sample, as uint8.

The crop boxes and flips come from the sample's row of uniforms in `mst.augment_batch`'s layout (so a sample
gets the same boxes as with the batched backend); the photometric ops run later, batched, in the training step
(`mst.photometric`). A JPEG is decoded at a reduced size (PIL's draft mode, a DCT-domain 1/2, 1/4 or 1/8) when
every crop of the sample still has at least as many source pixels as output pixels at that size; the crops are
then resampled with PIL's antialiased bicubic filter (what torchvision's bicubic resize reproduces).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mst.augment_batch import FLIP, crop_boxes
from mst.data.decode import open_image

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
