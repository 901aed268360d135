"""Multi-crop augmentation throughput on one core: the v2 pipeline (per sample) beside the batched one.

Rows, each for both backends, measured alternately (best of --repeats rounds, so load from other processes
hits all alike):
  full          as configured (BYOL ops per view);
  no jitter     the same without the colour jitter (jitter_prob 0);
  crops only    RandomResizedCrop + normalise: the least any multi-crop pipeline has to do.
v2 = mst.augment.v2.MultiCropAugment on one image at a time; batched = mst.augment.batched.BatchMultiCrop on
--batch images at a time (its per-sample seeding included). Then the cost of each v2 transform on one crop of
each size, to show where the v2 time goes.

    python benchmarks/bench_augment.py [--preset smoke|paper] [--samples 200] [--batch 64] [--repeats 5]
Writes benchmarks/results/augment_<preset>.md. Target at the smoke shape: > 1,000 samples/s/core.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import torch
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mst.augment.batched import BatchMultiCrop
from mst.augment.v2 import BICUBIC, MultiCropAugment, blur_kernel_size
from mst.config import AugmentConfig

PRESETS = {
    # the crops of jobs/presets/smoke.yaml
    "smoke": {"global_size": 32, "local_size": 16, "n_local": 4, "eval_resize": 32, "eval_crop": 32},
    "paper": {"global_size": 224, "local_size": 96, "n_local": 8},
}
IMAGE_SIDE = {"smoke": 32, "paper": 256}
RESULTS = Path(__file__).resolve().parent / "results"


def per_second(fn, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - t0)


def alternate(fns: dict, n: int, repeats: int, per_call: dict | None = None) -> dict:
    """Best items/s of each function over `repeats` alternating rounds of about n items.

    A function handles per_call[name] items per call (1 when not given).
    """
    per_call = per_call or {}
    calls = {name: max(1, n // per_call.get(name, 1)) for name in fns}
    for name, fn in fns.items():
        per_second(fn, max(1, calls[name] // 10))  # warm-up
    best = dict.fromkeys(fns, 0.0)
    for _ in range(repeats):
        for name, fn in fns.items():
            best[name] = max(best[name], per_second(fn, calls[name]) * per_call.get(name, 1))
    return best


def one_crop_ops(cfg: AugmentConfig, size: int) -> dict:
    """The transforms of one view, each always applied, by name."""
    return {
        "RandomResizedCrop": v2.RandomResizedCrop(size, interpolation=BICUBIC, antialias=True),
        "HorizontalFlip": v2.RandomHorizontalFlip(1.0),
        "ColorJitter": v2.ColorJitter(*cfg.jitter),
        "ColorJitter without hue": v2.ColorJitter(*cfg.jitter[:3]),
        "Grayscale": v2.RandomGrayscale(1.0),
        "GaussianBlur": v2.GaussianBlur(blur_kernel_size(size), sigma=cfg.blur_sigma),
        "Solarize": v2.RandomSolarize(cfg.solarize_threshold, 1.0),
        "ToDtype + Normalize": v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(cfg.mean, cfg.std)]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="smoke")
    parser.add_argument("--samples", type=int, default=200, help="images per round")
    parser.add_argument("--batch", type=int, default=64, help="images per call of the batched backend")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # one core, as in a DataLoader worker
    load = os.getloadavg()[0]

    cfg = AugmentConfig(**PRESETS[args.preset])
    side = IMAGE_SIDE[args.preset]
    image = torch.randint(0, 256, (3, side, side), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    bare = {"flip_prob": 0.0, "jitter_prob": 0.0, "gray_prob": 0.0, "blur_prob": (0.0,) * 3,
            "solarize_prob": (0.0,) * 3}
    variants = {"full": cfg, "no jitter": dataclasses.replace(cfg, jitter_prob=0.0),
                "crops only": dataclasses.replace(cfg, **bare)}
    images = torch.randint(0, 256, (args.batch, 3, side, side), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(1))
    seeds = list(range(args.batch))
    fns, per_call = {}, {}
    for name, variant in variants.items():
        v2_view, batched = MultiCropAugment(variant), BatchMultiCrop(variant)
        fns[("v2", name)] = lambda p=v2_view: p(image)
        fns[("batched", name)] = lambda p=batched: p(images, seeds)
        per_call[("batched", name)] = args.batch
    rates = alternate(fns, args.samples, args.repeats, per_call)
    end_load = os.getloadavg()[0]

    crops = f"2x{cfg.global_size} + {cfg.n_local}x{cfg.local_size} px crops from a {side} px image"
    lines = [f"# Multi-crop augmentation throughput ({args.preset}: {crops})", "",
             (f"Command: `python benchmarks/bench_augment.py --preset {args.preset} --samples {args.samples} "
              f"--batch {args.batch} --repeats {args.repeats}`"), "",
             (f"torch {torch.__version__}, 1 thread; best of {args.repeats} alternating rounds; batched: "
              f"{args.batch} images per call. Machine load average before: {load:.1f}, after: {end_load:.1f}, "
              f"on {os.cpu_count()} cores."), "",
             "| pipeline | v2 samples/s/core | batched samples/s/core | batched / v2 |", "|---|---|---|---|"]
    lines += [f"| {k} | {rates[('v2', k)]:,.0f} | {rates[('batched', k)]:,.0f} | "
              f"{rates[('batched', k)] / rates[('v2', k)]:.1f} |" for k in variants]

    lines += ["", "| transform | µs per global crop | µs per local crop |", "|---|---|---|"]
    crop_g, crop_l = image[:, : cfg.global_size, : cfg.global_size], image[:, : cfg.local_size, : cfg.local_size]
    g_ops, l_ops = one_crop_ops(cfg, cfg.global_size), one_crop_ops(cfg, cfg.local_size)
    for name in g_ops:
        timing = alternate({"g": lambda t=g_ops[name]: t(crop_g), "l": lambda t=l_ops[name]: t(crop_l)},
                           args.samples, max(1, args.repeats // 2))
        lines.append(f"| {name} | {1e6 / timing['g']:,.0f} | {1e6 / timing['l']:,.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = args.out or RESULTS / f"augment_{args.preset}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".md.tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
