"""An ImageNet-style folder of real JPEGs for benchmarks/bench_data.py, generated (never committed).

scikit-image's bundled sample photos, each a class: every image is a random crop of its photo, resized to
375x500 or 500x375 (ImageNet's most common shapes) and saved as a JPEG of quality 75-95, so every file
differs and decoding costs what ImageNet's does.

    python benchmarks/make_jpeg_folder.py OUT [--per-class 40] [--seed 0]
writes OUT/train/<photo>/<n>.jpg and OUT/val/<photo>/<n>.jpg (a quarter as many).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "camera",
          "coins")  # the last two are greyscale: ImageNet has such files too


def photo(name: str) -> Image.Image:
    array = getattr(data, name)()
    return Image.fromarray(array).convert("RGB")


def make_folder(out: Path, per_class: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split, n in (("train", per_class), ("val", max(1, per_class // 4))):
        for name in PHOTOS:
            source = photo(name)
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                w, h = source.size
                side = rng.uniform(0.5, 1.0)
                cw, ch = max(16, int(w * side)), max(16, int(h * side))
                left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
                size = (500, 375) if rng.random() < 0.7 else (375, 500)
                image = source.resize(size, Image.Resampling.BICUBIC, box=(left, top, left + cw, top + ch))
                if rng.random() < 0.5:
                    image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                image.save(folder / f"{i:05d}.jpg", quality=int(rng.integers(75, 96)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    make_folder(args.out, args.per_class, args.seed)
    print(f"{args.out}: {len(PHOTOS)} classes, {args.per_class} train + {max(1, args.per_class // 4)} val "
          "JPEGs each")


if __name__ == "__main__":
    main()
