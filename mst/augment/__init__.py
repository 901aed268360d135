"""Multi-crop augmentation, one module per `augment.backend`, and the datasets that seed it per sample.

- `v2`: per sample in the dataset, torchvision v2 (`MultiCropAugment` in an `AugmentedDataset`); also the
  evaluation and probe-training transforms (`eval_transform`, `probe_train_transform`).
- `batched`: per batch in the loader's collate (`MultiCropCollate` over a `SeededImageDataset`).
- `split`: crop and flip to uint8 in the loader workers (`CroppedDataset` with `CropCollate`), the photometric
  ops batched inside the training step on its device (`BatchPhotometric`).
- `datasets`: the items of each backend, every random draw seeded by (seed, epoch, index) alone.
"""

from mst.augment.batched import BatchMultiCrop, MultiCropCollate
from mst.augment.datasets import AugmentedDataset, CroppedDataset, SeededImageDataset
from mst.augment.split import BatchPhotometric, CropCollate
from mst.augment.v2 import MultiCropAugment, blur_kernel_size, eval_transform, probe_train_transform

__all__ = ["AugmentedDataset", "BatchMultiCrop", "BatchPhotometric", "CropCollate", "CroppedDataset",
           "MultiCropAugment", "MultiCropCollate", "SeededImageDataset", "blur_kernel_size", "eval_transform",
           "probe_train_transform"]
