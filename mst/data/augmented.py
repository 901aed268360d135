"""`AugmentedDataset`: per-sample augmentation seeded by (seed, epoch, index) only; `SeededImageDataset`: the
same seeds handed out with the raw images, for augmentation per batch.

Each item is transformed inside `torch.random.fork_rng`, seeded from `sample_seed(seed, epoch, index)`. The
result does not depend on the number of DataLoader workers, on which worker draws the item, or on where a
resumed run restarts within an epoch, and the caller's global torch RNG is left as it was.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import Dataset

from mst.seeding import sample_seed


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

    For augmentation per batch (`mst.augment_batch.MultiCropCollate`): the dataset only says which seed each
    sample's random parameters come from, so they stay a function of (seed, epoch, index) alone.
    """

    def __init__(self, base: Dataset, seed: int):
        super().__init__(base, transform=None, seed=seed)

    def __getitem__(self, index: int):
        image, label = self.base[index]
        return image, label, sample_seed(self.seed, self.epoch, index)
