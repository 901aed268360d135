"""Training-data throughput per core at the paper preset: the split pipeline beside a DINO-style PIL pipeline.

On an ImageNet-style folder of JPEGs (ROOT/train/<class>/*.jpg; benchmarks/make_jpeg_folder.py makes one), with
one core and one torch thread, decoding included, timed in alternating rounds of --batch samples:
  split (worker)   what a loader worker does per sample when the device takes the photometric ops: decode
                   (reduced-size where the crops allow), RandomResizedCrop + flip of 2 global and 8 local views to
                   uint8 (mst.augment.CroppedDataset), and the batch's collate;
  split (all CPU)  the same plus the photometric ops and normalisation batched on the CPU (mst.augment.split), as
                   a CPU-only run does in its main process;
  DINO-style PIL   decode, then per view torchvision v1 transforms on PIL images with DINO's published
                   augmentation parameters (written here from them), to normalised tensors, and the collate.

    python benchmarks/bench_data.py --root FOLDER [--seconds 60] [--batch 16] [--json] [--out results/data.md]
--json prints one JSON line (samples/s per core: cpu_samples_per_s_per_core, all_cpu_samples_per_s_per_core,
pil_samples_per_s_per_core, the ratios per round as min/median). Goals: split (worker) >= 1.5x PIL, split
(all CPU) >= 1.0x PIL.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import torch
from PIL import Image, ImageFilter, ImageOps
from torchvision import transforms as T

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from jobs.config_io import load_config
from mst.augment import BatchPhotometric, CropCollate
from mst.train.loader import train_dataset

RESULTS = Path(__file__).resolve().parent / "results"


# --- a DINO-style multi-crop on PIL images, from the parameters published with DINO (Caron et al., 2021) ----

class PILBlur:
    """Gaussian blur of radius ~ U(0.1, 2.0) with probability p (PIL's filter)."""

    def __init__(self, p: float, low: float = 0.1, high: float = 2.0):
        self.p, self.low, self.high = p, low, high

    def __call__(self, image: Image.Image) -> Image.Image:
        if random.random() >= self.p:
            return image
        return image.filter(ImageFilter.GaussianBlur(radius=random.uniform(self.low, self.high)))


class PILSolarize:
    """Invert the pixels at or above 128 with probability p."""

    def __init__(self, p: float):
        self.p = p

    def __call__(self, image: Image.Image) -> Image.Image:
        return ImageOps.solarize(image) if random.random() < self.p else image


class DinoStyleMultiCrop:
    """PIL image -> 2 global [3, 224, 224] + 8 local [3, 96, 96] normalised tensors, DINO's recipe."""

    def __init__(self, n_local: int = 8):
        jitter = T.Compose([T.RandomHorizontalFlip(p=0.5),
                            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
                            T.RandomGrayscale(p=0.2)])
        normalise = T.Compose([T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
        bicubic = T.InterpolationMode.BICUBIC
        self.global1 = T.Compose([T.RandomResizedCrop(224, scale=(0.4, 1.0), interpolation=bicubic), jitter,
                                  PILBlur(1.0), normalise])
        self.global2 = T.Compose([T.RandomResizedCrop(224, scale=(0.4, 1.0), interpolation=bicubic), jitter,
                                  PILBlur(0.1), PILSolarize(0.2), normalise])
        self.local = T.Compose([T.RandomResizedCrop(96, scale=(0.05, 0.4), interpolation=bicubic), jitter,
                                PILBlur(0.5), normalise])
        self.n_local = n_local

    def __call__(self, image: Image.Image) -> list[torch.Tensor]:
        return [self.global1(image), self.global2(image)] + [self.local(image) for _ in range(self.n_local)]


def pil_sample(path: str, transform: DinoStyleMultiCrop) -> list[torch.Tensor]:
    with open(path, "rb") as f:
        image = Image.open(f).convert("RGB")
    return transform(image)


# --- timing ---------------------------------------------------------------------------------------------------

def pin_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"core {core}"
    return "unpinned"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="ImageNet-style folder holding train/<class>/*.jpg")
    parser.add_argument("--seconds", type=float, default=60.0, help="total time of the timed rounds")
    parser.add_argument("--batch", type=int, default=16, help="samples per round and pipeline")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--out", default=None, help="also write a Markdown table here")
    args = parser.parse_args(argv)
    if not (Path(args.root) / "train").is_dir():
        print(f"bench_data: {args.root}/train does not exist; make a folder with "
              "`python benchmarks/make_jpeg_folder.py FOLDER`", file=sys.stderr)
        return 2
    load_before = f"{os.getloadavg()[0]:.1f}"
    where = pin_one_core()
    torch.set_num_threads(1)
    cfg = load_config("paper", [f"data.root={args.root}", "augment.backend=split", "data.num_workers=0"])
    dataset = train_dataset(cfg)
    collate, photometric = CropCollate(), BatchPhotometric(cfg.augment)
    paths = [path for path, _ in dataset.base.samples]
    dino = DinoStyleMultiCrop(cfg.augment.n_local)
    random.seed(0)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0)).tolist()
    cursor = {"i": 0}

    def next_indices() -> list[int]:
        out = [order[(cursor["i"] + k) % len(order)] for k in range(args.batch)]
        cursor["i"] += args.batch
        return out

    def split_round(indices):
        t0 = time.perf_counter()
        crops, _, seeds, _ = collate([dataset[i] for i in indices])
        t1 = time.perf_counter()
        photometric(crops, seeds.tolist())
        return t1 - t0, time.perf_counter() - t1

    def pil_round(indices):
        t0 = time.perf_counter()
        samples = [pil_sample(paths[i], dino) for i in indices]
        [torch.stack(views) for views in zip(*samples)]
        return time.perf_counter() - t0

    split_round(next_indices())          # warm-up: first-call costs, page cache
    pil_round(next_indices())
    rounds = []
    t_end = time.perf_counter() + args.seconds
    while time.perf_counter() < t_end or len(rounds) < 3:
        indices = next_indices()         # both pipelines on the same files
        worker, photo = split_round(indices)
        pil = pil_round(indices)
        rounds.append((worker, worker + photo, pil))
    n = args.batch
    rate = {"cpu": [n / w for w, _, _ in rounds], "all_cpu": [n / a for _, a, _ in rounds],
            "pil": [n / p for _, _, p in rounds]}
    ratio = {"cpu": [p / w for w, _, p in rounds], "all_cpu": [p / a for _, a, p in rounds]}
    result = {
        "cpu_samples_per_s_per_core": round(statistics.median(rate["cpu"]), 1),
        "all_cpu_samples_per_s_per_core": round(statistics.median(rate["all_cpu"]), 1),
        "pil_samples_per_s_per_core": round(statistics.median(rate["pil"]), 1),
        "cpu_vs_pil_min": round(min(ratio["cpu"]), 3), "cpu_vs_pil_median": round(statistics.median(ratio["cpu"]), 3),
        "all_cpu_vs_pil_min": round(min(ratio["all_cpu"]), 3),
        "all_cpu_vs_pil_median": round(statistics.median(ratio["all_cpu"]), 3),
        "rounds": len(rounds), "batch": n, "images": len(dataset), "torch": torch.__version__, "pinned": where,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    if args.out:
        rows = [("split (worker)", result["cpu_samples_per_s_per_core"], result["cpu_vs_pil_min"],
                 result["cpu_vs_pil_median"], ">= 1.5"),
                ("split (all CPU)", result["all_cpu_samples_per_s_per_core"], result["all_cpu_vs_pil_min"],
                 result["all_cpu_vs_pil_median"], ">= 1.0"),
                ("DINO-style PIL", result["pil_samples_per_s_per_core"], 1, 1, "")]
        lines = ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
        command = (f"python benchmarks/bench_data.py --root FOLDER --seconds {args.seconds:g} --batch {n} "
                   f"--out {args.out}")
        setting = (f"torch {torch.__version__}, 1 torch thread, pinned to {where}; {len(dataset)} JPEGs; "
                   f"{len(rounds)} alternating rounds of {n} samples per pipeline; load average before/after: "
                   f"{load_before} / {os.getloadavg()[0]:.1f}.")
        head = ["# Training-data throughput per core (paper preset: 2x224 + 8x96 crops, decoding included)", "",
                f"Command: `{command}`", "", setting, "",
                "| pipeline | samples/s/core (median) | / PIL min | / PIL median | goal |", "|---|---|---|---|---|"]
        Path(args.out).write_text("\n".join(head + lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
