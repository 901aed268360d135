"""Data sets (Fashion-MNIST IDX files, ImageNet-style folders) and seeded per-sample augmentation.

Items are (image, label) with image a uint8 tensor [3, H, W]; nothing is ever downloaded.
"""

from mst.data.augmented import AugmentedDataset
from mst.data.build import LabelledSubset, build_dataset, subset_indices
from mst.data.errors import DataError, DatasetMissingError

__all__ = ["AugmentedDataset", "DataError", "DatasetMissingError", "LabelledSubset", "build_dataset",
           "subset_indices"]
