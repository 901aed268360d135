"""ImageNet-style folders: <root>/<split>/<class>/<image>, decoded to uint8 RGB tensors."""

from __future__ import annotations

from pathlib import Path

from torchvision import datasets, tv_tensors
from torchvision.transforms.v2 import functional as F

from mst.data.decode import open_image
from mst.data.errors import DatasetMissingError
from mst.data.index import list_images


def load_image(path: str) -> tv_tensors.Image:
    """Decode one file to Image uint8 [3, H, W]; greyscale, palette and CMYK files are converted to RGB.

    PIL rather than torchvision.io: the latter's decoders are deprecated from torchvision 0.29 on.
    """
    with open_image(path) as image:  # UnreadableImage (one line naming the file) for a bomb or a non-image
        return tv_tensors.Image(F.pil_to_tensor(image.convert("RGB")))


class ImageFolderDataset(datasets.ImageFolder):
    """torchvision's ImageFolder (classes sorted by folder name, `targets`, `samples`) on uint8 tensors, its
    file list cached in `index_dir` (`mst.data.index`; default: the user's cache folder)."""

    def __init__(self, root: str | Path, split_dir: str, index_dir: str | Path | None = None):
        self.index_dir = index_dir
        folder = Path(root) / split_dir
        fix = ("set --set data.root=... to a folder holding train/<class>/*.jpg and val/<class>/*.jpg "
               "(or --set data.name=fashion_mnist)")
        if not folder.is_dir():
            raise DatasetMissingError(f"image folder {folder} does not exist; {fix}")
        try:
            super().__init__(str(folder), loader=load_image)
        except FileNotFoundError:
            # ImageFolder's own message spans several lines and lists extensions; say it in one.
            raise DatasetMissingError(
                f"image folder {folder} has no class folder with images; {fix}") from None
        if not self.samples:
            raise DatasetMissingError(f"image folder {folder} has no class folder with images; {fix}")

    def make_dataset(self, directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False):
        """The (path, label) list from the folder index; empty class folders are reported, not fatal."""
        return list_images(directory, class_to_idx, extensions or datasets.folder.IMG_EXTENSIONS, self.index_dir)
