"""What the learning curve costs a pre-training: CPU and wall time of loading its images once and of one point.

Builds the preset's CurveProbe (mst/train/curve.py), then times `evaluate` on the preset's backbone at random
initialisation (the same work at every step: class tokens of the curve subset, then the weighted k-NN), and
sets it against the pre-training's own CPU time per step measured by `make quality` (benchmarks/results/
quality.md) to give the share of a run. One torch thread unless --threads.

    python benchmarks/bench_curve.py [--preset smoke] [--set key=value ...] [--repeats 3] [--threads 1]
Writes benchmarks/results/curve.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from jobs.config_io import load_config
from mst.atomic import atomic_write_text
from mst.config import ConfigError
from mst.eval.baselines import initial_backbone
from mst.train.curve import CurveProbe

RESULTS = Path(__file__).resolve().parent / "results" / "curve.md"


def timed(fn) -> tuple[float, float, object]:
    """(CPU s of this process, wall s, result) of fn()."""
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn()
    return time.process_time() - cpu, time.perf_counter() - wall, out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="smoke")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--repeats", type=int, default=3, help="timed points (default 3; the median is reported)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--run-cpu-s", type=float, default=498.0, help="CPU s of one pre-training to compare with "
                   "(default 498: seed 0 of benchmarks/results/quality.md, 624 steps)")
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.preset, args.sets)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not cfg.eval.curve_steps:
        print("error: the config logs no curve; pass --set eval.curve_steps=[0,100,200]", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    load_cpu, load_wall, probe = timed(lambda: CurveProbe(cfg, torch.device("cpu")))
    backbone = initial_backbone(cfg)
    points = [timed(lambda: probe.evaluate(backbone)) for _ in range(max(1, args.repeats))]
    point_cpu = statistics.median(c for c, _, _ in points)
    point_wall = statistics.median(w for _, w, _ in points)
    n_points = len(cfg.eval.curve_steps)
    total = load_cpu + n_points * point_cpu
    lines = [
        "# The learning curve's cost (benchmarks/bench_curve.py)",
        "",
        (f"Preset {args.preset}{' ' + ' '.join(args.sets) if args.sets else ''}: curve subset "
        f"{cfg.eval.curve_subset[0]} train / {cfg.eval.curve_subset[1]} test images, {n_points} points, "
        f"{args.threads} torch thread(s), median of {len(points)} points."),
        "",
        "| item | CPU s | wall s |",
        "|---|---|---|",
        f"| load and transform the curve images (once a run) | {load_cpu:.2f} | {load_wall:.2f} |",
        f"| one point (class tokens + weighted k-NN) | {point_cpu:.2f} | {point_wall:.2f} |",
        f"| the whole curve ({n_points} points + load) | {total:.1f} | |",
        "",
        f"- share of a pre-training of {args.run_cpu_s:.0f} CPU s: {100 * total / args.run_cpu_s:.1f} %",
        (f"- load average before the last point: {', '.join(f'{x:.2f}' for x in os.getloadavg())} (a shared "
        "machine inflates wall times, not CPU times)"),
        f"- command: `{' '.join(['python benchmarks/bench_curve.py', *(argv if argv is not None else sys.argv[1:])])}`",
        "",
    ]
    text = "\n".join(lines)
    atomic_write_text(RESULTS, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
