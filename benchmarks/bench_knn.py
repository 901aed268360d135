"""Weighted k-NN throughput against its bound: a plain matmul + top-k over the same features and chunks.

The bound does only what any k-NN must do (similarities and one top-max(k) search); `weighted_knn` adds the
normalisation, the vote weights, one vote pass per k and the ranking. The ratio bound_time / knn_time is
the fraction of the bound's throughput that the full classifier keeps (goal >= 0.8).

    python benchmarks/bench_knn.py [--train 20000] [--test 4096] [--dim 384] [--device cpu]
Writes benchmarks/results/knn.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mst.eval.knn import weighted_knn

RESULTS = Path(__file__).resolve().parent / "results" / "knn.md"


def bound(train: torch.Tensor, test: torch.Tensor, k_max: int, chunk: int) -> None:
    """The plain matmul + top-k over the same chunks: the least work a k-NN over these features needs."""
    k_max = min(k_max, train.shape[0])
    for start in range(0, test.shape[0], chunk):
        sims = test[start : start + chunk] @ train.T  # [C, M]
        sims.topk(k_max, dim=1)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def once(fn, device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def side_by_side(first, second, device: torch.device, repeats: int) -> tuple[float, float]:
    """Best time of each, measured alternately so that load from other processes hits both alike."""
    first(), second()  # warm-up (allocator, kernels)
    a, b = [], []
    for _ in range(repeats):
        a.append(once(first, device))
        b.append(once(second, device))
    return min(a), min(b)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=20_000, help="training features")
    parser.add_argument("--test", type=int, default=4096, help="test queries")
    parser.add_argument("--dim", type=int, default=384, help="feature dimension (DeiT-S: 384)")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=1024, help="test queries per chunk (eval.knn_chunk_size)")
    parser.add_argument("--ks", default="10,20,100,200")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    ks = tuple(int(k) for k in args.ks.split(","))
    g = torch.Generator().manual_seed(0)
    train = torch.randn(args.train, args.dim, generator=g).to(device)
    test = torch.randn(args.test, args.dim, generator=g).to(device)
    train_labels = torch.randint(0, args.classes, (args.train,), generator=g).to(device)
    test_labels = torch.randint(0, args.classes, (args.test,), generator=g).to(device)
    # the bound sees already-normalised features, so it is not charged for normalisation either
    train_n = torch.nn.functional.normalize(train, dim=1)
    test_n = torch.nn.functional.normalize(test, dim=1)

    t_bound, t_knn = side_by_side(
        lambda: bound(train_n, test_n, max(ks), args.chunk),
        lambda: weighted_knn(train, train_labels, test, test_labels, ks, 0.07, args.classes, args.chunk),
        device,
        args.repeats,
    )
    ratio = t_bound / t_knn
    q_bound, q_knn = args.test / t_bound, args.test / t_knn
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    lines = [
        "# k-NN throughput vs matmul + top-k bound",
        "",
        (f"Command: `python benchmarks/bench_knn.py --train {args.train} --test {args.test} --dim {args.dim} "
         f"--classes {args.classes} --chunk {args.chunk} --ks {args.ks} --device {args.device}`"),
        "",
        (f"Device: {args.device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}; "
         f"best of {args.repeats} alternating runs after a warm-up."),
        "",
        "| what | seconds | queries/s |",
        "|---|---|---|",
        f"| bound: matmul + top-{max(ks)} | {t_bound:.4f} | {q_bound:,.0f} |",
        f"| weighted_knn, ks={ks} | {t_knn:.4f} | {q_knn:,.0f} |",
        "",
        f"**Ratio (bound time / k-NN time): {ratio:.3f}** (goal >= 0.8)",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".md.tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, args.out)
    return 0 if ratio >= 0.8 else 1


if __name__ == "__main__":
    sys.exit(main())
