"""`AugmentedDataset`: per-sample augmentation seeded by (seed, epoch, index) only; `SeededImageDataset`: the
same seeds handed out with the raw images, for augmentation per batch.

Each item is transformed inside `torch.random.fork_rng`, seeded from `sample_seed(seed, epoch, index)`. The
result does not depend on the number of DataLoader workers, on which worker draws the item, or on where a
resumed run restarts within an epoch, and the caller's global torch RNG is left as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from PIL import Image
from torch.utils.data import Dataset, Subset

from ..seeding import sample_seed
from .batched import draw_uniforms
from .split import geometric_crops

log = logging.getLogger(__name__)


class AugmentedDataset(Dataset):
    """Items (transform(image), label) of `base`, reproducible from (seed, epoch, index).

    Call `set_epoch(e)` before building the epoch's DataLoader iterator. Workers receive a copy of this object
    when the iterator starts, so do not use `persistent_workers=True` (their copy would keep the old epoch).
    """

    def __init__(self, base: Dataset, transform: Callable, seed: int):
        self.base = base
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        image, label = self.base[index]
        # torchvision's random transforms draw from torch's global CPU generator: fork it so that the
        # caller's stream (and a worker's) is untouched, and seed it for this sample alone.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed(self.seed, self.epoch, index))
            return self.transform(image), label


class SeededImageDataset(AugmentedDataset):
    """Items (uint8 image, label, sample seed) of `base`: the seed is `sample_seed(seed, epoch, index)`.

    For augmentation per batch (`mst.augment.batched.MultiCropCollate`): the dataset only says which seed each
    sample's random parameters come from, so they stay a function of (seed, epoch, index) alone.
    """

    def __init__(self, base: Dataset, seed: int):
        super().__init__(base, transform=None, seed=seed)

    def __getitem__(self, index: int):
        image, label = self.base[index]
        return image, label, sample_seed(self.seed, self.epoch, index)


def image_source(base: Dataset, index: int):
    """What `mst.augment.split.geometric_crops` reads for item `index`: the file path of an image folder (so
    the decoder can draft), else the uint8 image tensor; and the label."""
    if isinstance(base, Subset):
        return image_source(base.dataset, base.indices[index])
    samples = getattr(base, "samples", None)
    if samples is not None:
        path, label = samples[index]
        return path, label
    image, label = base[index]
    return image.as_subclass(torch.Tensor), label


class CroppedDataset(AugmentedDataset):
    """Items (V uint8 crops [3, S, S], label, sample seed) of `base`, or None for an unreadable image file.

    The worker side of the split pipeline: decode, RandomResizedCrop and flip from the sample's seed
    `sample_seed(seed, epoch, index)`; the photometric ops follow in the step
    (`mst.augment.split.BatchPhotometric`). An index may also be an (epoch, index) pair, which lets persistent
    loader workers serve any epoch.
    """

    def __init__(self, base: Dataset, aug_cfg, seed: int):
        super().__init__(base, transform=None, seed=seed)
        self.cfg = aug_cfg
        self.n_views = 2 + aug_cfg.n_local
        self.gen = torch.Generator()

    def __getitem__(self, index):
        epoch, index = index if isinstance(index, tuple) else (self.epoch, index)
        seed = sample_seed(self.seed, epoch, index)
        source, label = image_source(self.base, index)
        u = draw_uniforms(self.gen, [seed], self.n_views)[0]                   # [V, WIDTH]
        try:
            crops = geometric_crops(source, u, self.cfg)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            log.warning("skipping unreadable image %s: %s", source, str(err).splitlines()[0] if str(err) else
                        type(err).__name__)
            return None
        return crops, label, seed
