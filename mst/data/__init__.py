"""Data sets: Fashion-MNIST IDX files, ImageNet-style folders (their augmentation: `mst.augment`).

Items are (image, label) with image a uint8 tensor [3, H, W]; nothing is ever downloaded.
"""

from mst.data.build import LabelledSubset, build_dataset, subset_indices
from mst.data.errors import DataError, DatasetMissingError

__all__ = ["DataError", "DatasetMissingError", "LabelledSubset", "build_dataset", "subset_indices"]
