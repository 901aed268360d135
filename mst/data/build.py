"""`build_dataset(data_cfg, split)`: the configured data set and split, optionally a stable subset."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, Subset

from mst.data.errors import DataError
from mst.data.fashion_mnist import FashionMNIST
from mst.data.folder import ImageFolderDataset

SPLITS = ("train", "test", "val")
SUBSET_SEED = 20211  # fixed on purpose: a subset must not change with the run's seed


class LabelledSubset(Subset):
    """A Subset that keeps `targets` [N] and `classes` of the base data set (the k-NN and probes read them)."""

    def __init__(self, dataset: Dataset, indices: list[int]):
        super().__init__(dataset, indices)
        self.classes = dataset.classes
        self.targets = torch.as_tensor(dataset.targets)[torch.as_tensor(indices, dtype=torch.long)]


def subset_indices(n_total: int, n: int) -> list[int]:
    """The first n indices of a permutation fixed by SUBSET_SEED, sorted.

    Subsets are stable across runs and nested (the n-subset lies inside every larger one), and a uniform draw
    keeps them roughly class-balanced.
    """
    generator = torch.Generator().manual_seed(SUBSET_SEED)
    return sorted(torch.randperm(n_total, generator=generator)[:n].tolist())


def build_dataset(data_cfg, split: str) -> Dataset:
    """Items (Image uint8 [3, H, W], int label). "test" and "val" both mean the evaluation split.

    Fashion-MNIST: official train (60,000) / test (10,000). Folder: <root>/train and <root>/val.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    train = split == "train"
    if data_cfg.name == "fashion_mnist":
        dataset = FashionMNIST(data_cfg.root, "train" if train else "test")
    elif data_cfg.name == "folder":
        dataset = ImageFolderDataset(data_cfg.root, "train" if train else "val", data_cfg.index_dir or None)
    else:
        raise DataError(f"unknown data set {data_cfg.name!r}; set --set data.name=fashion_mnist or folder")
    key = "data.train_subset" if train else "data.test_subset"
    n = data_cfg.train_subset if train else data_cfg.test_subset
    if n < 0 or n > len(dataset):
        raise DataError(f"{key}={n} but the {split} split has {len(dataset)} images; "
                        f"set --set {key}=N with 0 < N <= {len(dataset)}, or 0 for all")
    if n == 0 or n == len(dataset):
        return dataset
    return LabelledSubset(dataset, subset_indices(len(dataset), n))
