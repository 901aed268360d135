"""Does pre-training learn? Weighted k-NN on Fashion-MNIST: pre-trained teacher vs the same network untrained.

For each seed, pre-trains a preset (default: smoke) into a folder, then runs a weighted k-NN (train subset /
official test subset, k = 10 and 20) on three kinds of features:
  - the pre-trained teacher backbone's final-norm class token;
  - the same architecture at random initialisation: exactly the weights that seed's run started from;
  - raw pixels (the normalised evaluation image, flattened; the same for every seed).
It prints each seed's numbers, its gap (pre-trained minus random init, top-1 at k = 10) and its distance to raw
pixels (pre-trained minus raw pixels), the means and standard errors of both, writes benchmarks/results/quality.md, and exits 1 when the mean gap is below --min-gap points. One seed
is not enough: two seeds of the same preset measured +7.2 and +3.3 points.

    python benchmarks/quality_fmnist.py [--preset smoke] [--seeds 0 1 2] [--set key=value ...] [--out DIR]
Re-running with the same --out reuses finished pre-trainings (the trainer's own resume rule; one folder a seed).
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
from analysis.stats import Summary, summarize
from jobs.config_io import load_config
from mst.atomic import atomic_write_text
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
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], metavar="SEED",
                   help="train.seed of each pre-training (default: 0 1 2)")
    p.add_argument("--out", default=None, help="parent of the seed-N pre-training folders (default: a fresh "
                   "temporary folder)")
    p.add_argument("--train-n", type=int, default=10000, help="k-NN training images (default 10000)")
    p.add_argument("--test-n", type=int, default=2000, help="k-NN test images from the official test split")
    p.add_argument("--min-gap", type=float, default=5.0, help="required mean top-1@10 gap in points (default 5)")
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


@dataclasses.dataclass(frozen=True)
class SeedResult:
    seed: int
    pretrained: dict[str, float]
    random_init: dict[str, float]
    steps: int
    wall_s: float
    cpu_s: float
    config_hash: str

    @property
    def gap(self) -> float:
        return self.pretrained["top1@10"] - self.random_init["top1@10"]


def gap_text(gap: Summary) -> str:
    """'+5.7 ± 0.6' (mean ± s.e. over seeds; one seed has no s.e.)."""
    return f"{gap.mean:+.1f} ± {gap.se:.1f}" if gap.se is not None else f"{gap.mean:+.1f} (one seed, no s.e.)"


def write_report(path: Path, results: list[SeedResult], gap: Summary, raw: dict[str, float], args, cfg: Config,
                 load_before: str, load_after: str) -> None:
    verdict = "PASS" if gap.mean >= args.min_gap else "FAIL"
    command = "python benchmarks/quality_fmnist.py " + " ".join(
        [f"--preset {args.preset}", "--seeds " + " ".join(map(str, args.seeds))]
        + [f"--set {shlex.quote(s)}" for s in args.sets])
    lines = [
        "# Fashion-MNIST quality check (make quality)",
        "",
        (f"Weighted k-NN (T = {cfg.eval.knn_temperature}) on {args.train_n} training / {args.test_n} official "
         "test images, class token of the teacher backbone; random init = the weights that seed's run started "
         "from."),
        "",
        ("| seed | pre-trained @10 | random init @10 | gap @10 | pre-trained @20 | pre-trained top-5 @10 | steps "
         "| wall s | CPU s | config |"),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r.seed} | {r.pretrained['top1@10']:.1f} | {r.random_init['top1@10']:.1f} | "
                     f"{r.gap:+.1f} | {r.pretrained['top1@20']:.1f} | {r.pretrained['top5@10']:.1f} | {r.steps} | "
                     f"{r.wall_s:.0f} | {r.cpu_s:.0f} | {r.config_hash} |")
    pretrained_mean = summarize([r.pretrained["top1@10"] for r in results]).mean
    lines += [
        "",
        (f"- gap (pre-trained minus random init, top-1 @10), mean over {len(results)} seeds: "
         f"**{gap_text(gap)} points** (s.e.; needs a mean >= {args.min_gap:g}): **{verdict}**"),
        (f"- raw pixels: top-1 @10 {raw['top1@10']:.1f}, @20 {raw['top1@20']:.1f}; pre-trained minus raw pixels "
         f"(mean): {pretrained_mean - raw['top1@10']:+.1f} points"),
        (f"- wall and CPU time are per pre-training ({torch.get_num_threads()} torch threads, precision "
         f"{cfg.train.precision}; 0 CPU s = reused a finished folder)"),
        (f"- load average (1, 5, 15 min) before: {load_before}; after: {load_after} "
         "(the machine may be shared: times are pessimistic)"),
        f"- host: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        f"- command: `{command}`",
        "",
    ]
    atomic_write_text(path, "\n".join(lines))


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the data-loader workers), user + system."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def pretrain_seed(cfg: Config, out: Path, images: dict[str, torch.Tensor]) -> SeedResult:
    """Pre-train one seed into `out` and k-NN its teacher and its initial weights."""
    t0, cpu0 = time.time(), cpu_seconds()
    record = run_pretrain(cfg, out, show_progress=False)
    wall = record.get("wall_time_s") or time.time() - t0
    cpu = cpu_seconds() - cpu0   # 0 when the folder held a finished run
    m = record["metrics"]
    print(f"seed {cfg.train.seed}: {m['steps']} steps in {wall:.0f} s wall, {cpu:.0f} s CPU; final loss "
          f"{m['loss']:.4f} (dino {m['loss_dino']:.4f}, rec {m['loss_rec']:.4f})", flush=True)
    bs, temp, labels = cfg.eval.feature_batch_size, cfg.eval.knn_temperature, (images["train_y"], images["test_y"])

    def features_knn(backbone: torch.nn.Module) -> dict[str, float]:
        return knn(class_tokens(backbone, images["train_x"], bs), class_tokens(backbone, images["test_x"], bs),
                   labels, temp)

    trained, _, _ = load_pretrained(out, which=cfg.eval.knn_source)
    return SeedResult(seed=cfg.train.seed, pretrained=features_knn(trained),
                      random_init=features_knn(initial_backbone(cfg)), steps=m["steps"], wall_s=wall, cpu_s=cpu,
                      config_hash=config_hash(cfg))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if len(set(args.seeds)) != len(args.seeds):
        print(f"error: --seeds {' '.join(map(str, args.seeds))} repeats a seed; give each seed once",
              file=sys.stderr)
        return 2
    try:
        configs = [load_config(args.preset, [*args.sets, f"train.seed={seed}"]) for seed in args.seeds]
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    cfg = configs[0]
    if cfg.data.name != "fashion_mnist":
        print("error: this check is for Fashion-MNIST; use a preset with data.name: fashion_mnist",
              file=sys.stderr)
        return 2
    parent = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="mst-quality-"))
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)

    train_x, train_y = load_images(cfg, "train", args.train_n)
    test_x, test_y = load_images(cfg, "test", args.test_n)
    images = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}
    raw = knn(train_x.flatten(1), test_x.flatten(1), (train_y, test_y), cfg.eval.knn_temperature)

    load_before = load_average()
    print(f"pre-training {args.preset} {' '.join(args.sets)} seeds {args.seeds} into {parent} "
          f"(load {load_before})", flush=True)
    results = []
    for seed_cfg in configs:
        r = pretrain_seed(seed_cfg, parent / f"seed-{seed_cfg.train.seed}", images)
        results.append(r)
        print(f"seed {r.seed}: pre-trained top-1@10 {r.pretrained['top1@10']:5.1f}  random init "
              f"{r.random_init['top1@10']:5.1f}  gap {r.gap:+.1f}  to raw pixels "
              f"{r.pretrained['top1@10'] - raw['top1@10']:+.1f}", flush=True)
    load_after = load_average()

    gap = summarize([r.gap for r in results])
    print(f"raw pixels top-1@10 {raw['top1@10']:5.1f}  top-1@20 {raw['top1@20']:5.1f}")
    print(f"gap over random init: {gap_text(gap)} points (mean ± s.e. over {len(results)} seeds; "
          f"needs a mean >= {args.min_gap:g})")
    to_raw = summarize([r.pretrained["top1@10"] - raw["top1@10"] for r in results])
    print(f"distance to raw pixels (pre-trained minus raw pixels, top-1@10): {gap_text(to_raw)} points")
    if args.results:
        write_report(Path(args.results), results, gap, raw, args, cfg, load_before, load_after)
        print(f"wrote {args.results}")
    return 0 if gap.mean >= args.min_gap else 1


if __name__ == "__main__":
    sys.exit(main())
