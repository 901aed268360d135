"""Cost of an MST step against a DINO-only step and the bare backbone, side by side in one process.

(a) backbone alone, forward + backward on the crops; (b) a DINO-only step (mask none, restore weight 0);
(c) a full MST step. Interleaved repetitions on the same crops; the medians of the per-repetition ratios are
printed and written to benchmarks/results/step.md. Goals: c/b <= 1.10 (<= 1.00 against DINO's own step, for which
(b) stands in), c/a <= 1.30 at the paper shape, batch 8.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from jobs.config_io import load_config
from mst.train import PretrainTrainer
from mst.train.nets import frozen_bn_stats

SHAPES = [
    # (preset, overrides, batch per step)
    ("smoke", ["train.batch_size=64"], 64),
    ("paper", ["train.batch_size=4", "augment.n_local=8"], 4),
    ("paper", ["train.batch_size=8", "augment.n_local=8"], 8),
]


def shape_name(preset: str, cfg, batch: int) -> str:
    a = cfg.augment
    return (f"{preset} ({cfg.model.arch}/{cfg.model.patch_size}, 2x{a.global_size} + {a.n_local}x{a.local_size} px, "
            f"batch {batch})")


def crops_for(cfg, batch: int) -> list[torch.Tensor]:
    g, s = cfg.augment.global_size, cfg.augment.local_size
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(batch, 3, g, g, generator=gen) for _ in range(2)] + \
           [torch.randn(batch, 3, s, s, generator=gen) for _ in range(cfg.augment.n_local)]


def trainer(cfg, batch: int, out: Path) -> PretrainTrainer:
    return PretrainTrainer(cfg, out, dataset=list(range(batch)))


def backbone_step(t: PretrainTrainer, crops: list[torch.Tensor]) -> None:
    bb = t.student.backbone
    loss = bb(torch.cat(crops[:2])).cls.mean()
    if len(crops) > 2:
        loss = loss + bb(torch.cat(crops[2:])).cls.mean()
    loss.backward()
    bb.zero_grad(set_to_none=True)


def decoder_flop_ratio(t: PretrainTrainer, crop: torch.Tensor) -> float:
    bb, dec = t.student.backbone, t.student.decoder
    with torch.no_grad():
        with FlopCounterMode(display=False) as fc:
            out = bb(crop)
        backbone = fc.get_total_flops()
        grid = (crop.shape[2] // bb.patch_size, crop.shape[3] // bb.patch_size)
        with FlopCounterMode(display=False) as fc:
            dec(out.patches, grid)
    return fc.get_total_flops() / backbone


def head_time_ratio(t: PretrainTrainer, batch: int, reps: int) -> float:
    """Median time ratio, the student head's forward + backward as two calls (globals, locals: the weight-normed
    last layer computed twice, as before) over one last-layer call on every crop (what the step does now)."""
    head, n_local = t.student.head, t.cfg.augment.n_local
    dim = t.student.backbone.embed_dim
    gen = torch.Generator().manual_seed(1)
    g, loc = torch.randn(2 * batch, dim, generator=gen), torch.randn(n_local * batch, dim, generator=gen)

    def two_calls():
        torch.cat([head(g), head(loc)]).mean().backward()

    def one_call():
        head.last_layer(torch.cat([head.bottleneck(g), head.bottleneck(loc)])).mean().backward()
    ratios = []
    for _ in range(reps + 1):
        t0 = time.perf_counter()
        two_calls()
        t1 = time.perf_counter()
        one_call()
        ratios.append((t1 - t0) / (time.perf_counter() - t1))
    head.zero_grad(set_to_none=True)
    return statistics.median(ratios[1:])


def two_call_forward(student, globals_, locals_, mask, generator=None):
    """The student's forward as it was before the head's last layer ran once per step: the whole head (and so
    its 65536-wide weight-normed last layer) once on the globals and once on the locals."""
    out = student.backbone(globals_, mask=mask, replace=student.replace, generator=generator)
    logits, restored = [student.head(out.cls)], None
    if student.decoder is not None:
        p = student.backbone.patch_size
        restored = student.decoder(out.patches, (globals_.shape[2] // p, globals_.shape[3] // p))
    if locals_ is not None:
        with frozen_bn_stats(student.head):
            logits.append(student.head(student.backbone(locals_).cls))
    return torch.cat(logits), restored


def old_head_step_ratio(t: PretrainTrainer, crops: list[torch.Tensor], reps: int) -> float:
    """Median ratio, the MST step with the two-call head over the step as it is, interleaved."""
    cls, now = type(t.student), type(t.student).forward
    ratios = []
    try:
        for _ in range(reps + 1):
            cls.forward = two_call_forward
            t0 = time.perf_counter()
            t.train_step(crops)
            cls.forward = now
            t1 = time.perf_counter()
            t.train_step(crops)
            ratios.append((t1 - t0) / (time.perf_counter() - t1))
    finally:
        cls.forward = now
    return statistics.median(ratios[1:])


def measure(preset: str, sets: list[str], batch: int, reps: int, threads: int) -> dict:
    tmp = Path(tempfile.mkdtemp())
    # the trainer sets torch's threads from train.threads: with 0 it would take the cores left after the
    # preset's loader workers (1 for the paper preset's 8 workers), whatever --threads asked for
    # balance_every=0: the loss-balance measurement (two extra gradient passes at its steps and at the last)
    # is logging, not the step; with one-step epochs it would land on a timed repetition
    sets = [*sets, f"train.threads={threads}", "train.balance_every=0"]
    mst_cfg = load_config(preset, sets)
    name = shape_name(preset, mst_cfg, batch)
    dino_cfg = load_config(preset, [*sets, "mask.strategy=none", "loss.restore_weight=0"])
    mst, dino = trainer(mst_cfg, batch, tmp / "mst"), trainer(dino_cfg, batch, tmp / "dino")
    crops = crops_for(mst_cfg, batch)
    runs = {"a": lambda: backbone_step(mst, crops), "b": lambda: dino.train_step(crops),
            "c": lambda: mst.train_step(crops)}
    for fn in runs.values():                # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(reps):
        for key, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    cb = statistics.median(c / b for c, b in zip(times["c"], times["b"]))
    ca = statistics.median(c / a for c, a in zip(times["c"], times["a"]))
    return {"shape": name, "a_s": statistics.median(times["a"]), "b_s": statistics.median(times["b"]),
            "c_s": statistics.median(times["c"]), "c/b": cb, "c/a": ca,
            "decoder/backbone FLOPs": decoder_flop_ratio(mst, crops[0][:1]),
            "head 2 calls / 1": head_time_ratio(mst, batch, reps),
            "step, 2-call head / now": old_head_step_ratio(mst, crops, reps)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "step.md"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = [measure(preset, sets, batch, args.reps, args.threads) for preset, sets, batch in SHAPES]
    assert torch.get_num_threads() == args.threads, "the trainer changed the thread count"
    device = "CPU" if not torch.cuda.is_available() else torch.cuda.get_device_name()
    lines = [f"# MST step cost ({device}, {args.threads} threads, fp32, median of {args.reps} interleaved reps)",
             "", f"Command: `python benchmarks/bench_step.py --reps {args.reps} --threads {args.threads}` (`make bench`)",
             "",
             ("| shape | (a) backbone s | (b) DINO step s | (c) MST step s | c/b | c/a | decoder/backbone FLOPs | "
              "head: 2 calls / 1 | MST step, 2-call head / now |"),
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['shape']} | {r['a_s']:.3f} | {r['b_s']:.3f} | {r['c_s']:.3f} | {r['c/b']:.3f} | "
                     f"{r['c/a']:.3f} | {r['decoder/backbone FLOPs']:.3f} | {r['head 2 calls / 1']:.2f} | "
                     f"{r['step, 2-call head / now']:.3f} |")
    goals = "Goals: c/b <= 1.10; c/a <= 1.30 at the paper shape, batch 8; decoder FLOPs <= 10 % of the backbone's."
    lines += ["", goals]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
