"""GPU check: what the CPU-only test suite cannot show, on one device, in at most 6 minutes (`make gpu-check`).

1. MST step at the paper shape (DeiT-S/16, 2 x 224 + 8 x 96 px crops, 64 images per device) in bf16, and
   in fp16 with loss scaling: finite losses, seconds per step, and MFU = counted FLOPs / step time / the
   device's peak (dense bf16/fp16 tensor throughput from PEAK_TFLOPS, or --peak-tflops).
2. Backbone forward on the CPU and on the device, fp32 with TF32 off and the reference attention kernel:
   they agree within FORWARD_ATOL + FORWARD_RTOL x |cpu|.
3. Batched multi-crop augmentation on the device gives the CPU's crops within AUGMENT_ATOL.
4. Checkpoint -> resume on the device ends with the weights of an uninterrupted run (bit-exact digest).
5. Weighted k-NN on the device gives the CPU's accuracies within KNN_ATOL points.
6. The split pipeline's device side (`augment.backend: split`): colour jitter, grayscale, blur and
   solarisation of a batch of uint8 crops on the device vs in the main process on the CPU: the same views
   within AUGMENT_ATOL, and the time per batch on each.

Results go to benchmarks/results/gpu.md (or --out). Without a device it prints one line and exits 0.
`--device cpu --tiny` runs every part at a tiny shape on the CPU (a smoke test of this script).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

BUDGET_S = 360.0          # the whole check, on one GPU
FORWARD_ATOL, FORWARD_RTOL = 1e-4, 1e-4
AUGMENT_ATOL = 1e-4       # as tests/test_augment_batch.py's CUDA test
KNN_ATOL = 0.05           # percent points: ties between equal similarities may break differently
# dense bf16 / fp16 tensor-core peaks in TFLOP/s (vendor data sheets, SXM parts); a name not here gives no MFU
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "A800": 312.0, "L40S": 362.0, "V100": 125.0,
               "MI300X": 1307.0, "MI250X": 383.0}
ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                    help="cuda (default; ROCm/DTK devices answer to it too) or cpu for a smoke run")
    ap.add_argument("--tiny", action="store_true", help="tiny shapes (vit_test on 32 px) instead of the paper's")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per precision (default 10, tiny 2)")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="the device's dense bf16/fp16 peak, when its name is not in the table")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu.md"))
    return ap.parse_args(argv)


class Check:
    """Sections run in order against one deadline; each adds a row (name, ok, what was found)."""

    def __init__(self, budget_s: float) -> None:
        self.deadline = time.time() + budget_s
        self.rows: list[tuple[str, bool | None, str]] = []

    def run(self, name: str, fn) -> None:
        if time.time() > self.deadline:
            self.rows.append((name, None, "skipped: the time budget is spent"))
            return
        started = time.time()
        try:
            ok, text = fn()
        except Exception as err:  # noqa: BLE001 - a section that breaks is a finding; the others still run
            ok, text = False, f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"
        self.rows.append((name, ok, f"{text} ({time.time() - started:.1f} s)"))
        print(f"[gpu-check] {name}: {'ok' if ok else 'FAILED'}: {text}", flush=True)


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_call(fn, device):
    """fn()'s result after one warm-up call, and the seconds the timed call took (the device synchronised)."""
    fn()
    sync(device)
    started = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - started


def largest_difference(outs, refs) -> float:
    """The largest absolute difference between matching tensors of two lists, compared on the CPU."""
    return max((a.cpu() - b.cpu()).abs().max().item() for a, b in zip(outs, refs))


def load(preset_sets: tuple[str, list[str]], extra: list[str]):
    from jobs.config_io import load_config

    preset, sets = preset_sets
    return load_config(preset, [*sets, *extra])


def crops_for(cfg, batch: int, device):
    import torch

    g, s = cfg.augment.global_size, cfg.augment.local_size
    gen = torch.Generator().manual_seed(0)
    crops = [torch.randn(batch, 3, g, g, generator=gen) for _ in range(2)]
    crops += [torch.randn(batch, 3, s, s, generator=gen) for _ in range(cfg.augment.n_local)]
    return [c.to(device) for c in crops]                  # [B, 3, G, G] x 2, [B, 3, S, S] x n_local


def step_section(shape, batch: int, precision: str, steps: int, device, peak: float | None):
    """Finite losses, seconds per step and MFU of the MST step in `precision`."""
    from mst.compat import count_flops
    from mst.train import PretrainTrainer

    def run():
        cfg = load(shape, [f"train.precision={precision}", f"train.batch_size={batch}"])
        with tempfile.TemporaryDirectory() as tmp:
            trainer = PretrainTrainer(cfg, Path(tmp), dataset=list(range(batch)))
            if trainer.device.type != device.type:
                return False, f"the trainer picked {trainer.device}, not {device}"
            crops = crops_for(cfg, batch, device)
            losses = [trainer.train_step(crops)["loss"] for _ in range(2)]          # warm-up
            sync(device)
            started = time.perf_counter()
            for _ in range(steps):
                losses.append(trainer.train_step(crops)["loss"])
            sync(device)
            per_step = (time.perf_counter() - started) / steps
            counted, flops = count_flops(trainer.train_step, crops)
            losses.append(counted["loss"])
            finite = all(math.isfinite(v) for v in losses)
            used = trainer.precision
            scale = f", loss scale {trainer.scaler.get_scale():g}" if trainer.scaler.is_enabled() else ""
        mfu = f"MFU {100 * flops / per_step / (peak * 1e12):.1f} %" if peak else "MFU n/a (peak unknown)"
        text = (f"{used}: {per_step * 1000:.1f} ms/step, {flops / 1e9:.1f} GFLOP/step counted, {mfu}, "
                f"losses {losses[0]:.4f} -> {losses[-1]:.4f}{scale}")
        return finite, text if finite else "non-finite loss: " + text
    return run


def forward_section(shape, device):
    def run():
        import torch

        from mst.compat import math_attention
        from mst.models import build_backbone

        cfg = load(shape, [])
        torch.manual_seed(0)
        backbone = build_backbone(cfg.model, cfg.augment.global_size, drop_path=0.0).eval()
        x = torch.randn(4, 3, cfg.augment.global_size, cfg.augment.global_size,
                        generator=torch.Generator().manual_seed(1))              # [4, 3, G, G]
        tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        try:
            with torch.no_grad(), math_attention():
                cpu = backbone(x).cls                                             # [4, D]
                dev = backbone.to(device)(x.to(device)).cls.cpu()
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
        worst = ((dev - cpu).abs() - FORWARD_RTOL * cpu.abs()).max().item()
        diff = (dev - cpu).abs().max().item()
        ok = worst <= FORWARD_ATOL
        return ok, (f"{cfg.model.arch} class token, largest difference {diff:.2e} (tolerance "
                    f"{FORWARD_ATOL:g} + {FORWARD_RTOL:g} x the cpu value; fp32, TF32 off, math attention)")
    return run


def augment_section(shape, batch: int, device):
    def run():
        import torch

        from mst.augment import BatchMultiCrop

        cfg = load(shape, [])
        side = cfg.augment.global_size + cfg.augment.global_size // 7
        images = torch.randint(0, 256, (batch, 3, side, side), dtype=torch.uint8,
                               generator=torch.Generator().manual_seed(2))        # [B, 3, H, W]
        seeds = list(range(batch))
        augment = BatchMultiCrop(cfg.augment)
        cpu = augment(images, seeds)
        on_device = images.to(device)
        crops, took = timed_call(lambda: augment(on_device, seeds), device)
        where = {c.device.type for c in crops}
        diff = largest_difference(crops, cpu)
        ok = where == {device.type} and diff <= AUGMENT_ATOL
        return ok, (f"{len(crops)} crops of {batch} images on {', '.join(sorted(where))} in {took * 1000:.1f} ms; "
                    f"largest difference from the cpu's {diff:.1e} (tolerance {AUGMENT_ATOL:g})")
    return run


def photometric_section(shape, batch: int, device):
    """The split backend's photometric ops on `batch` samples' uint8 crops: device vs CPU, values and time."""
    def run():
        import torch

        from mst.augment import BatchPhotometric

        cfg = load(shape, [])
        c = cfg.augment
        gen = torch.Generator().manual_seed(3)
        sizes = [c.global_size] * 2 + [c.local_size] * c.n_local
        crops = [torch.randint(0, 256, (batch, 3, s, s), dtype=torch.uint8, generator=gen) for s in sizes]
        seeds = list(range(batch))
        ops = BatchPhotometric(c)
        on_device = [t.to(device) for t in crops]
        cpu, cpu_s = timed_call(lambda: ops(crops, seeds), device)
        out, dev_s = timed_call(lambda: ops(on_device, seeds), device)
        diff = largest_difference(out, cpu)
        ok = {t.device.type for t in out} == {device.type} and diff <= AUGMENT_ATOL
        return ok, (f"{len(sizes)} views of {batch} samples: {dev_s * 1000:.1f} ms on {device.type} "
                    f"({batch / dev_s:.0f} samples/s) vs {cpu_s * 1000:.1f} ms on the cpu ({cpu_s / dev_s:.1f}x); "
                    f"largest difference {diff:.1e} (tolerance {AUGMENT_ATOL:g})")
    return run


class SyntheticImages:
    """Deterministic uint8 images [3, S, S] with 10 labels: a stand-in data set that needs no files."""

    def __init__(self, n: int, side: int) -> None:
        self.n, self.side = n, side

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        import torch

        gen = torch.Generator().manual_seed(index)
        return torch.randint(0, 256, (3, self.side, self.side), dtype=torch.uint8, generator=gen), index % 10


def resume_section(device):
    """Tiny preset on the device in bf16 (fp32 on the CPU): stop after 5 of 8 steps, resume, compare digests."""
    def run():
        import torch

        from jobs.config_io import load_config
        from mst.augment import AugmentedDataset, MultiCropAugment
        from mst.train import Interrupted, PretrainTrainer

        cfg = load_config("tiny", ["train.batch_size=16", "train.epochs=2", "train.checkpoint_every=3",
                                   "train.precision=bf16"])
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            def dataset():
                return AugmentedDataset(SyntheticImages(64, 36), MultiCropAugment(cfg.augment), cfg.train.seed)

            with tempfile.TemporaryDirectory() as tmp:
                for sub in ("full", "resumed"):
                    (Path(tmp) / sub).mkdir()
                full = PretrainTrainer(cfg, Path(tmp) / "full", dataset=dataset())
                full.fit(None, show_progress=False)
                polls = {"n": 0}

                def stop_after_five() -> bool:
                    polls["n"] += 1
                    return polls["n"] > 5
                first = PretrainTrainer(cfg, Path(tmp) / "resumed", dataset=dataset())
                try:
                    first.fit(stop_after_five, show_progress=False)
                    return False, "the run was not interrupted"
                except Interrupted:
                    pass
                second = PretrainTrainer(cfg, Path(tmp) / "resumed", dataset=dataset())
                second.fit(None, show_progress=False)
                same = second.digest() == full.digest() and second.step == full.step == 8
                text = (f"{second.precision} on {second.device}: stopped at step 5, resumed to step {second.step}; "
                        f"weights {'equal' if same else 'DIFFER'} ({second.digest()[:16]} vs {full.digest()[:16]})")
        finally:
            torch.use_deterministic_algorithms(False)
        return same, text
    return run


def knn_section(tiny: bool, device):
    def run():
        import torch

        from mst.eval.knn import weighted_knn

        n_train, n_test, dim = (2000, 500, 64) if tiny else (50000, 10000, 384)
        gen = torch.Generator().manual_seed(3)
        centres = torch.randn(10, dim, generator=gen)

        def sample(n: int):
            labels = torch.randint(0, 10, (n,), generator=gen)
            return centres[labels] + 2.0 * torch.randn(n, dim, generator=gen), labels   # [n, dim], [n]

        (xtr, ytr), (xte, yte) = sample(n_train), sample(n_test)
        cpu = weighted_knn(xtr, ytr, xte, yte, ks=(10, 20), num_classes=10)
        sync(device)
        started = time.perf_counter()
        dev = weighted_knn(xtr.to(device), ytr.to(device), xte.to(device), yte.to(device), ks=(10, 20),
                           num_classes=10)
        sync(device)
        took = time.perf_counter() - started
        diff = max(abs(dev[k] - cpu[k]) for k in cpu)
        ok = diff <= KNN_ATOL
        return ok, (f"{n_train} x {n_test} features of {dim}: top1@20 {dev['top1@20']:.2f} on {device.type}, "
                    f"{cpu['top1@20']:.2f} on cpu, max difference {diff:.3f} points (tolerance {KNN_ATOL}); "
                    f"{took * 1000:.0f} ms")
    return run


def write_report(path: Path, header: list[str], rows) -> None:
    lines = header + ["", "| check | ok | found |", "|---|---|---|"]
    for name, ok, text in rows:
        lines.append(f"| {name} | {'ok' if ok else ('skipped' if ok is None else 'FAILED')} | {text} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""   # the trainer picks its own device: leave it only the CPU
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS for the resume check
    sys.path.insert(0, str(ROOT))
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu-check: no GPU on this machine (torch.cuda.is_available() is False); nothing to check")
        return 0
    device = torch.device("cuda", 0) if args.device == "cuda" else torch.device("cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    if device.type == "cpu":
        peak = args.peak_tflops
    if args.tiny:
        shape, batch, steps = ("tiny", []), 8, args.steps or 2
    else:
        shape, batch, steps = ("paper", ["augment.n_local=8"]), 64, args.steps or 10
    started = time.time()
    check = Check(BUDGET_S)
    check.run("MST step, bf16", step_section(shape, batch, "bf16", steps, device, peak))
    check.run("MST step, fp16 + loss scaling", step_section(shape, batch, "fp16", steps, device, peak))
    check.run("backbone forward, cpu vs device", forward_section(shape, device))
    check.run("batched augmentation on the device", augment_section(shape, batch, device))
    check.run("checkpoint -> resume, same weights", resume_section(device))
    check.run("k-NN on the device", knn_section(args.tiny, device))
    check.run("split pipeline: photometric ops on the device", photometric_section(shape, batch, device))
    total = time.time() - started
    header = [f"# GPU check ({name})", "",
              f"Command: `make gpu-check` (python benchmarks/gpu_check.py{' --device cpu --tiny' if args.tiny else ''}); "
              f"torch {torch.__version__}, {'tiny shapes' if args.tiny else 'paper shape'} "
              f"(batch {batch} per device), {steps} timed steps per precision; took {total:.0f} s "
              f"of a {BUDGET_S:.0f} s budget. MFU peak: "
              + (f"{peak:g} TFLOP/s" if peak else "unknown (pass --peak-tflops)") + "."]
    write_report(Path(args.out), header, check.rows)
    failed = [n for n, ok, _ in check.rows if ok is not True]
    print(f"gpu-check: {len(check.rows) - len(failed)}/{len(check.rows)} checks passed in {total:.0f} s; "
          f"wrote {args.out}" + (f"; not passed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
