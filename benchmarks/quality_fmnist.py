"""Does pre-training learn? Weighted k-NN on Fashion-MNIST: pre-trained teacher vs the same network untrained.

Pre-trains a preset (default: smoke) into a folder, then runs a weighted k-NN (train subset / official test
subset, k = 10 and 20) on three kinds of features:
  - the pre-trained teacher backbone's final-norm class token;
  - the same architecture at random initialisation: exactly the weights the run started from (same seed);
  - raw pixels (the normalised evaluation image, flattened).
It prints the three numbers and the gap (pre-trained minus random init, top-1 at k = 10), writes
benchmarks/results/quality.md, and exits 1 when the gap is below --min-gap points.

    python benchmarks/quality_fmnist.py [--preset smoke] [--set key=value ...] [--out DIR]
Re-running with the same --out reuses a finished pre-training (the trainer's own resume rule).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import resource
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from jobs.config_io import load_config
from mst.augment import eval_transform
from mst.checkpoint import load_pretrained
from mst.config import Config, ConfigError, config_hash
from mst.data import build_dataset
from mst.eval.knn import weighted_knn
from mst.seeding import seed_everything
from mst.train import run_pretrain
from mst.train.nets import Student

RESULTS = Path(__file__).resolve().parent / "results" / "quality.md"
KS = (10, 20)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="smoke", help="preset name or .yaml path (default: smoke)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="config override on top of the preset (repeatable)")
    p.add_argument("--out", default=None, help="pre-training folder (default: a fresh temporary folder)")
    p.add_argument("--train-n", type=int, default=10000, help="k-NN training images (default 10000)")
    p.add_argument("--test-n", type=int, default=2000, help="k-NN test images from the official test split")
    p.add_argument("--min-gap", type=float, default=5.0, help="required top-1@10 gap in points (default 5)")
    p.add_argument("--results", default=str(RESULTS), help="markdown file to write ('' writes none)")
    return p.parse_args(argv)


def load_images(cfg: Config, split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Evaluation-transformed images [N, 3, S, S] and labels [N] of a stable n-subset of `split`."""
    key = "train_subset" if split == "train" else "test_subset"
    data = build_dataset(dataclasses.replace(cfg.data, **{key: n}), split)
    transform = eval_transform(cfg.augment)
    images, labels = zip(*(data[i] for i in range(len(data))))
    return torch.stack([transform(im) for im in images]), torch.tensor(labels)


@torch.no_grad()
def class_tokens(backbone: torch.nn.Module, images: torch.Tensor, batch: int) -> torch.Tensor:
    backbone.eval()
    return torch.cat([backbone(images[i:i + batch]).cls for i in range(0, len(images), batch)])  # [N, D]


def initial_backbone(cfg: Config) -> torch.nn.Module:
    """The student backbone exactly as the trainer builds it before step 1 (same seed, same order of draws)."""
    seed_everything(cfg.train.seed)
    return Student(cfg).backbone


def knn(train: torch.Tensor, test: torch.Tensor, labels: tuple[torch.Tensor, torch.Tensor],
        temperature: float) -> dict[str, float]:
    return weighted_knn(train, labels[0], test, labels[1], ks=KS, temperature=temperature, num_classes=10)


def write_report(path: Path, rows: dict[str, dict[str, float]], gap: float, args, cfg: Config, wall: float,
                 cpu: float, steps: int, load_before: str, load_after: str, min_gap: float) -> None:
    verdict = "PASS" if gap >= min_gap else "FAIL"
    command = "python benchmarks/quality_fmnist.py " + " ".join(
        [f"--preset {args.preset}"] + [f"--set {shlex.quote(s)}" for s in args.sets])
    lines = [
        "# Fashion-MNIST quality check (make quality)",
        "",
        (f"Weighted k-NN (T = {cfg.eval.knn_temperature}) on {args.train_n} training / {args.test_n} official "
        "test images, class token of the teacher backbone."),
        "",
        "| features | top-1 @10 | top-1 @20 | top-5 @10 |",
        "|---|---|---|---|",
    ]
    for name, m in rows.items():
        lines.append(f"| {name} | {m['top1@10']:.1f} | {m['top1@20']:.1f} | {m['top5@10']:.1f} |")
    lines += [
        "",
        (f"- gap (pre-trained minus random init, top-1 @10): **{gap:+.1f} points** (needs >= {min_gap:g}): "
        f"**{verdict}**"),
        f"- gap to raw pixels: {rows['pre-trained'].get('top1@10') - rows['raw pixels']['top1@10']:+.1f} points",
        (f"- pre-training: {steps} steps, {wall:.0f} s wall ({wall / 60:.1f} min), {cpu:.0f} CPU-seconds "
        f"(process + data workers; 0 = reused a finished folder), {torch.get_num_threads()} torch threads, "
        f"precision {cfg.train.precision}"),
        (f"- load average (1, 5, 15 min) before: {load_before}; after: {load_after} "
        f"(the machine is shared: times are pessimistic)"),
        f"- host: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        f"- command: `{command}` (resolved config {config_hash(cfg)})",
        "",
    ]
    tmp = path.with_suffix(".md.tmp")
    with open(tmp, "w") as f:
        f.write("\n".join(lines))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the data-loader workers), user + system."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_config(args.preset, args.sets)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if cfg.data.name != "fashion_mnist":
        print("error: this check is for Fashion-MNIST; use a preset with data.name: fashion_mnist",
              file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="mst-quality-"))
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)

    load_before = load_average()
    print(f"pre-training {args.preset} {' '.join(args.sets)} into {out} (load {load_before})", flush=True)
    t0, cpu0 = time.time(), cpu_seconds()
    record = run_pretrain(cfg, out, show_progress=False)
    wall = record.get("wall_time_s") or time.time() - t0
    cpu = cpu_seconds() - cpu0   # 0 when the folder held a finished run
    load_after = load_average()
    print(f"pre-training: {record['metrics']['steps']} steps in {wall:.0f} s wall, {cpu:.0f} s CPU; final loss "
          f"{record['metrics']['loss']:.4f} (dino {record['metrics']['loss_dino']:.4f}, "
          f"rec {record['metrics']['loss_rec']:.4f})", flush=True)

    train_x, train_y = load_images(cfg, "train", args.train_n)
    test_x, test_y = load_images(cfg, "test", args.test_n)
    labels = (train_y, test_y)
    bs, temp = cfg.eval.feature_batch_size, cfg.eval.knn_temperature

    trained, _, _ = load_pretrained(out, which=cfg.eval.knn_source)
    rows = {"pre-trained": knn(class_tokens(trained, train_x, bs), class_tokens(trained, test_x, bs), labels, temp)}
    untrained = initial_backbone(cfg)
    rows["random init"] = knn(class_tokens(untrained, train_x, bs), class_tokens(untrained, test_x, bs), labels,
                              temp)
    rows["raw pixels"] = knn(train_x.flatten(1), test_x.flatten(1), labels, temp)

    for name, m in rows.items():
        print(f"{name:12s} top-1@10 {m['top1@10']:5.1f}  top-1@20 {m['top1@20']:5.1f}  top-5@10 {m['top5@10']:5.1f}")
    gap = rows["pre-trained"]["top1@10"] - rows["random init"]["top1@10"]
    print(f"gap over random init: {gap:+.1f} points (needs >= {args.min_gap:g}); over raw pixels: "
          f"{rows['pre-trained']['top1@10'] - rows['raw pixels']['top1@10']:+.1f}")
    if args.results:
        write_report(Path(args.results), rows, gap, args, cfg, wall, cpu, record["metrics"]["steps"], load_before,
                     load_after, args.min_gap)
        print(f"wrote {args.results}")
    return 0 if gap >= args.min_gap else 1


if __name__ == "__main__":
    sys.exit(main())
