"""Training data: multi-crop views seeded per sample, and a resumable distributed sampler."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, DistributedSampler

from ..augment import MultiCropAugment
from ..augment_batch import MultiCropCollate
from ..data import AugmentedDataset, build_dataset
from ..data.augmented import CroppedDataset, SeededImageDataset
from ..data.crops import CropCollate
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
