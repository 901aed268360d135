"""Fashion-MNIST from the IDX .gz files of the Debian package `dataset-fashion-mnist`.

The whole split is decoded once into one uint8 tensor, padded 28 -> 32 px with zeros so that patch sizes
4, 8 and 16 tile it, and served as 3-channel images (the channel is repeated per item, not stored).
"""

from __future__ import annotations

import functools
import os
import zlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from mst.data.errors import DatasetMissingError
from mst.inputs import InputError, read_regular

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
PAD = 2  # 28 + 2 * 2 = 32
_UBYTE = 0x08  # IDX type code of unsigned bytes
MAX_GZ_BYTES = 64 << 20  # the largest file, train-images-idx3-ubyte.gz, is 26 MB
MAX_IDX_BYTES = 64 << 20  # and 47 MB once inflated


def _missing(path: Path, problem: str) -> DatasetMissingError:
    return DatasetMissingError(
        f"Fashion-MNIST file {path} {problem}; install it with `apt-get install dataset-fashion-mnist` "
        f"or point --set data.root=... at a folder holding the four IDX .gz files")


def read_idx(path: Path, ndim: int) -> torch.Tensor:
    """Decode one gzip'ed IDX file of unsigned bytes with `ndim` dimensions."""
    if not os.path.lexists(path):
        raise _missing(path, "does not exist")
    try:
        packed = read_regular(path, "Fashion-MNIST file", MAX_GZ_BYTES)  # a FIFO or device never blocks
    except InputError as exc:
        raise _missing(path, exc.reason) from None
    except OSError as exc:
        raise _missing(path, f"cannot be read ({exc.strerror or exc})") from None
    try:
        # bounded: a few hundred bytes of gzip can expand to gigabytes
        inflate = zlib.decompressobj(wbits=31)
        raw = inflate.decompress(packed, MAX_IDX_BYTES + 1)
    except zlib.error as exc:
        raise _missing(path, f"is not a readable gzip file ({exc})") from None
    if len(raw) > MAX_IDX_BYTES:
        raise _missing(path, f"inflates to more than {MAX_IDX_BYTES} bytes (the training images are 47 MB)")
    if not inflate.eof:
        raise _missing(path, "is not a readable gzip file (it ends before its data does: truncated?)")
    # IDX header: two zero bytes, a type code, the number of dimensions, then one big-endian uint32 per dim.
    if len(raw) < 4 + 4 * ndim or raw[0:2] != b"\0\0" or raw[2] != _UBYTE or raw[3] != ndim:
        raise _missing(path, f"has no IDX header of {ndim}-d unsigned bytes")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    size = int(np.prod(shape))
    if len(raw) != 4 + 4 * ndim + size:
        raise _missing(path, f"holds {len(raw) - 4 - 4 * ndim} bytes of data, its header says {size}")
    data = np.frombuffer(raw, dtype=np.uint8, count=size, offset=4 + 4 * ndim).reshape(shape)
    return torch.from_numpy(data.copy())


@functools.lru_cache(maxsize=2)
def load_split(root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 [N, 32, 32] zero-padded, labels int64 [N]) of one split, decoded once per process."""
    images_file, labels_file = (root / name for name in FILES[split])
    images = read_idx(images_file, 3)  # [N, 28, 28]
    labels = read_idx(labels_file, 1)  # [N]
    if len(images) != len(labels) or images.shape[1:] != (28, 28):
        raise _missing(images_file, f"has images of shape {tuple(images.shape)} for {len(labels)} labels")
    return torch.nn.functional.pad(images, (PAD, PAD, PAD, PAD)), labels.long()


class FashionMNIST(Dataset):
    """The official split ("train": 60,000 images, "test": 10,000), items (Image uint8 [3, 32, 32], label)."""

    classes = CLASSES

    def __init__(self, root: str | Path, split: str):
        # shared, never written to: every instance of a split reads the same two tensors
        self.images, self.targets = load_split(Path(root).resolve(), split)  # [N, 32, 32], [N]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[tv_tensors.Image, int]:
        image = self.images[index].expand(3, -1, -1).clone()  # [3, 32, 32] greyscale as RGB
        return tv_tensors.Image(image), int(self.targets[index])
