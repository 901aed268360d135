"""Image transforms on uint8 tensors (torchvision.transforms.v2): BYOL multi-crop, evaluation and probe inputs.

Multi-crop [MST appendix §2 = BYOL augmentations with DINO's multi-crop]: per view a bicubic
RandomResizedCrop, horizontal flip, colour jitter, grayscale, Gaussian blur and solarisation, where blur and
solarisation have their own probability per view kind (global 1, global 2, locals). Every random draw comes
from torch's global generator, so `mst.augment.datasets.AugmentedDataset` makes each sample reproducible.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

BICUBIC = v2.InterpolationMode.BICUBIC


def blur_kernel_size(crop_size: int) -> int:
    """An odd kernel of about 10 % of the crop (BYOL's 23 px at 224), at least 3."""
    k = round(0.1 * crop_size)
    return max(3, k + 1 - k % 2)


def _normalise(aug_cfg) -> list[v2.Transform]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(aug_cfg.mean), list(aug_cfg.std)),
            v2.ToPureTensor()]


def view_transform(aug_cfg, size: int, scale: tuple[float, float], blur_p: float,
                   solarize_p: float) -> v2.Compose:
    """One view's pipeline: uint8 image [3, H, W] -> normalised float tensor [3, size, size].

    Ops whose probability is 0 are left out (no time spent, no random numbers drawn).
    """
    ops: list[v2.Transform] = [v2.RandomResizedCrop(size, scale=tuple(scale), interpolation=BICUBIC,
                                                    antialias=True)]
    if aug_cfg.flip_prob > 0:
        ops.append(v2.RandomHorizontalFlip(aug_cfg.flip_prob))
    if aug_cfg.jitter_prob > 0:
        ops.append(v2.RandomApply([v2.ColorJitter(*aug_cfg.jitter)], p=aug_cfg.jitter_prob))
    if aug_cfg.gray_prob > 0:
        ops.append(v2.RandomGrayscale(aug_cfg.gray_prob))
    if blur_p > 0:
        blur = v2.GaussianBlur(blur_kernel_size(size), sigma=tuple(aug_cfg.blur_sigma))
        ops.append(v2.RandomApply([blur], p=blur_p))
    if solarize_p > 0:
        ops.append(v2.RandomSolarize(aug_cfg.solarize_threshold, p=solarize_p))
    return v2.Compose(ops + _normalise(aug_cfg))


class MultiCropAugment:
    """image uint8 [3, H, W] -> [global 1, global 2, local 1, ..., local n_local], float tensors.

    Globals are [3, global_size, global_size], locals [3, local_size, local_size].
    """

    def __init__(self, aug_cfg):
        blur, solarize = aug_cfg.blur_prob, aug_cfg.solarize_prob
        self.global_views = [
            view_transform(aug_cfg, aug_cfg.global_size, aug_cfg.global_scale, blur[i], solarize[i])
            for i in (0, 1)]
        self.local_view = view_transform(aug_cfg, aug_cfg.local_size, aug_cfg.local_scale, blur[2], solarize[2])
        self.n_local = aug_cfg.n_local

    def __call__(self, image: torch.Tensor) -> list[torch.Tensor]:
        crops = [view(image) for view in self.global_views]
        crops += [self.local_view(image) for _ in range(self.n_local)]
        return crops


def eval_transform(aug_cfg) -> v2.Compose:
    """Evaluation input: bicubic resize of the short side to eval_resize, centre crop eval_crop, normalise."""
    return v2.Compose([v2.Resize(aug_cfg.eval_resize, interpolation=BICUBIC, antialias=True),
                       v2.CenterCrop(aug_cfg.eval_crop)] + _normalise(aug_cfg))


def probe_train_transform(aug_cfg) -> v2.Compose:
    """Linear-probe training input [appendix §5]: RandomResizedCrop(eval_crop) and flip only, normalised."""
    return v2.Compose([v2.RandomResizedCrop(aug_cfg.eval_crop, interpolation=BICUBIC, antialias=True),
                       v2.RandomHorizontalFlip(aug_cfg.flip_prob)] + _normalise(aug_cfg))
