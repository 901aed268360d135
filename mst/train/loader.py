"""Training data: multi-crop views seeded per sample, and a resumable distributed sampler."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from ..augment import (
    AugmentedDataset,
    CropCollate,
    CroppedDataset,
    MultiCropAugment,
    MultiCropCollate,
    SeededImageDataset,
)
from ..data import build_dataset
from ..seeding import sample_seed, worker_init_fn


def train_dataset(cfg) -> AugmentedDataset:
    """Multi-crop training items: augmented per sample (backend v2), (image, label, seed) for the
    batched backend, which `epoch_loader` augments per batch in its collate_fn, or uint8 crops for the split
    backend, whose photometric ops the training step applies."""
    base = build_dataset(cfg.data, "train")
    if cfg.augment.backend == "batched":
        return SeededImageDataset(base, cfg.train.seed)
    if cfg.augment.backend == "split":
        return CroppedDataset(base, cfg.augment, cfg.train.seed)
    return AugmentedDataset(base, MultiCropAugment(cfg.augment), cfg.train.seed)


class ResumableSampler(DistributedSampler):
    """DistributedSampler (shuffled by seed + epoch, sharded by rank) that can start mid-epoch."""

    def __init__(self, dataset, num_replicas: int, rank: int, seed: int, start_index: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.start_index = start_index

    def __iter__(self):
        return iter(list(super().__iter__())[self.start_index:])

    def __len__(self) -> int:
        return self.num_samples - self.start_index


def epoch_loader(dataset: AugmentedDataset, cfg, epoch: int, start_batch: int, world: int, rank: int,
                 device: torch.device) -> DataLoader:
    """The loader of `epoch`, skipping its first `start_batch` batches (already trained on before a resume)."""
    local_batch = cfg.train.batch_size // world
    dataset.set_epoch(epoch)
    sampler = ResumableSampler(dataset, world, rank, cfg.train.seed, start_batch * local_batch)
    sampler.set_epoch(epoch)
    # the loader's own generator: creating an iterator must not draw from the global torch stream
    gen = torch.Generator()
    gen.manual_seed(sample_seed(cfg.train.seed, epoch, -1 - rank))
    workers = cfg.data.num_workers
    # seeded items are augmented per batch, in the worker (or the main process when workers == 0)
    collate = MultiCropCollate(cfg.augment) if isinstance(dataset, SeededImageDataset) else None
    if isinstance(dataset, CroppedDataset):
        collate = CropCollate()
    return DataLoader(dataset, batch_size=local_batch, sampler=sampler, num_workers=workers, drop_last=True,
                      pin_memory=device.type == "cuda", generator=gen, worker_init_fn=worker_init_fn,
                      persistent_workers=False, prefetch_factor=4 if workers else None, collate_fn=collate)


class EpochIndexSampler(Sampler):
    """(epoch, index) pairs of a `ResumableSampler`: persistent loader workers take the epoch from each index
    (`CroppedDataset`), so their copy of the dataset never serves a stale epoch."""

    def __init__(self, inner: ResumableSampler):
        self.inner = inner
        self.epoch = 0

    def start(self, epoch: int, start_index: int) -> None:
        self.epoch, self.inner.start_index = epoch, start_index
        self.inner.set_epoch(epoch)

    def __iter__(self):
        return ((self.epoch, index) for index in self.inner)

    def __len__(self) -> int:
        return len(self.inner)


class RunLoader:
    """The training batches of each epoch of a run.

    Split backend with workers: one DataLoader for the whole run, its workers persistent across epochs and
    prefetching 4 batches each (a worker start re-imports torch and re-opens the data set: seconds per epoch at
    ImageNet scale). Their torch seeds derive from (seed, first epoch, rank, worker) through the loader's
    generator; no augmentation draws from them (every sample is seeded by (seed, epoch, index)), so batches do
    not depend on them. Other backends: a fresh `epoch_loader` per epoch, as before.
    """

    def __init__(self, dataset, cfg, world: int, rank: int, device: torch.device):
        self.dataset, self.cfg, self.world, self.rank, self.device = dataset, cfg, world, rank, device
        self.loader: DataLoader | None = None
        self.sampler: EpochIndexSampler | None = None

    def epoch(self, epoch: int, start_batch: int):
        cfg = self.cfg
        workers = cfg.data.num_workers
        if not isinstance(self.dataset, CroppedDataset) or workers == 0:
            return epoch_loader(self.dataset, cfg, epoch, start_batch, self.world, self.rank, self.device)
        local_batch = cfg.train.batch_size // self.world
        if self.loader is None:
            self.sampler = EpochIndexSampler(ResumableSampler(self.dataset, self.world, self.rank, cfg.train.seed))
            gen = torch.Generator()
            gen.manual_seed(sample_seed(cfg.train.seed, epoch, -1 - self.rank))
            self.loader = DataLoader(self.dataset, batch_size=local_batch, sampler=self.sampler,
                                     num_workers=workers, drop_last=True, pin_memory=self.device.type == "cuda",
                                     generator=gen, worker_init_fn=worker_init_fn, persistent_workers=True,
                                     prefetch_factor=4, collate_fn=CropCollate())
        self.sampler.start(epoch, start_batch * local_batch)
        return self.loader
