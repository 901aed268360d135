"""What a preflight job finds on a node, one report per rank (runs on the node; see jobs/preflight.py).

Each rank sets up its devices and ranks exactly as a training job would (jobs.stage_job.StageJob), then reports:
versions, the device family, count and names it sees, a tiny forward/backward on its device in the profile's
precision, an all-reduce across every rank over the profile's backend, and the storage it must use. A check
that breaks is recorded in the report, never raised: the login side turns reports into problem lines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.devices import existing_masks, export_ranks, select_device
from mst.run.record import error_line, versions

if TYPE_CHECKING:
    from jobs.profiles import ClusterProfile

# Fashion-MNIST's four IDX files (mst.data.fashion_mnist.FILES), checked without importing the data package
FASHION_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
GIB = 1024 ** 3


def _versions() -> dict[str, str | None]:
    """The versions the supported ranges name (None: not installed), as a record lists them."""
    import torch

    found = {pkg: versions().get(pkg) for pkg in ("python", "torch", "torchvision", "timm")}
    found["torch"] = torch.__version__  # a vendor build may carry a version its metadata does not (or none)
    return found


def _ranks(profile: ClusterProfile, under_slurm: bool) -> dict[str, Any]:
    """Rank layout as the training job exports it (RANK, LOCAL_RANK, WORLD_SIZE), the masks Slurm or the site
    set before the job's own code ran, and the device the rank takes (jobs.devices, as StageJob does)."""
    before = existing_masks()
    layout = {"rank": 0, "local_rank": 0, "world_size": 1, "local_world_size": 1}  # the in-process rank
    choice = select_device("none", 0, 1)
    if under_slurm:
        env, choice = export_ranks(profile.environment.visible_devices)
        layout = {key: getattr(env, key) for key in layout}
    return {**layout, "masks_before": before, "choice": dataclasses.asdict(choice)}


def _devices() -> dict[str, Any]:
    import torch

    build = "rocm" if getattr(torch.version, "hip", None) else ("cuda" if torch.version.cuda else "cpu")
    out: dict[str, Any] = {"build": build, "build_version": torch.version.hip or torch.version.cuda,
                           "count": 0, "names": [], "error": None}
    try:
        if torch.cuda.is_available():
            out["count"] = torch.cuda.device_count()
            out["names"] = [torch.cuda.get_device_name(i) for i in range(out["count"])]
    except Exception as err:  # noqa: BLE001 - a broken driver raises anything: that is the finding
        out["error"] = error_line(err)
    return out


def _step(precision: str, device_index: int | None) -> dict[str, Any]:
    """One forward/backward of a tiny MLP on this rank's device with the profile's precision."""
    import torch

    from mst.compat import autocast, grad_scaler

    device = torch.device("cpu") if device_index is None else torch.device("cuda", device_index)
    used = precision if device.type == "cuda" else "fp32"  # the method trains in fp32 on the CPU
    out: dict[str, Any] = {"device": str(device), "precision": used, "ok": False, "loss": None, "ms": None,
                           "error": None}
    started = time.perf_counter()
    try:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        gen = torch.Generator().manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.GELU(), torch.nn.Linear(256, 64)).to(device)
        x = torch.randn(32, 64, generator=gen).to(device)                 # [32, 64]
        scaler = grad_scaler(device.type, enabled=used == "fp16")
        with autocast(used, device.type):
            loss = net(x).float().pow(2).mean()
        scaler.scale(loss).backward()
        grads = torch.cat([p.grad.float().flatten() for p in net.parameters()])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        finite = bool(torch.isfinite(loss).item() and torch.isfinite(grads).all().item())
        out.update(ok=finite, loss=float(loss.item()), ms=round(1000 * (time.perf_counter() - started), 1),
                   error=None if finite else "non-finite loss or gradients")
    except Exception as err:  # noqa: BLE001 - a failing step is a finding, reported, not raised
        out["error"] = error_line(err)[:300]
    return out


def _all_reduce(kind: str, under_slurm: bool, ranks: dict[str, int], device_index: int | None
                ) -> dict[str, Any]:
    """Sum of (rank + 1) over every rank: world * (world + 1) / 2 when the collective works; `kind` is
    accelerators.kind."""
    import torch
    import torch.distributed as dist

    wanted = "gloo" if kind == "cpu" else "nccl"  # RCCL answers to nccl on ROCm/DTK builds
    backend = wanted if (wanted == "gloo" or device_index is not None) else "gloo"
    world = ranks["world_size"]
    out: dict[str, Any] = {"backend": backend, "wanted": wanted, "world_size": world, "ok": False,
                           "value": None, "expected": world * (world + 1) / 2, "error": None}
    try:
        if under_slurm:
            dist.init_process_group(backend, timeout=timedelta(seconds=120))
        else:  # the single in-process rank: a group of one over the same backend
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1,
                                    timeout=timedelta(seconds=60))
        device = torch.device("cpu") if backend == "gloo" else torch.device("cuda", device_index)
        t = torch.tensor([float(ranks["rank"] + 1)], device=device)
        dist.all_reduce(t)
        out["value"] = float(t.item())
        out["ok"] = out["value"] == out["expected"]
        dist.destroy_process_group()
    except Exception as err:  # noqa: BLE001 - a failing collective is a finding, reported, not raised
        out["error"] = error_line(err)[:300]
    return out


def _data_root(name: str, path: str) -> dict[str, Any]:
    root = Path(path)
    out: dict[str, Any] = {"name": name, "path": path, "ok": False, "detail": ""}
    try:
        if not root.is_dir():
            out["detail"] = "does not exist or is not a folder"
        elif not os.access(root, os.R_OK | os.X_OK):
            out["detail"] = "not readable"
        elif name == "fashion_mnist":
            missing = [f for f in FASHION_FILES if not os.access(root / f, os.R_OK)]
            out["ok"] = not missing
            out["detail"] = f"missing or unreadable: {', '.join(missing)}" if missing else "4 IDX files, 10 classes"
        elif (root / "train").is_dir():  # ImageNet-style <root>/<split>/<class>/<image>
            counts = {split: sum(1 for d in (root / split).iterdir() if d.is_dir())
                      for split in ("train", "val") if (root / split).is_dir()}
            out["ok"] = counts.get("train", 0) > 0
            out["detail"] = ", ".join(f"{split} {n} classes" for split, n in counts.items())
        else:
            entries = sum(1 for _ in root.iterdir())
            out["ok"] = entries > 0
            out["detail"] = f"{entries} entries" if entries else "empty"
    except OSError as err:
        out["detail"] = f"cannot list it ({err.strerror or err})"
    return out


def _writable(path: str) -> dict[str, Any]:
    """Whether a file can be created (and removed) in `path`, or in its nearest existing parent when `path`
    does not exist yet (jobs create it); plus the free space there."""
    target = Path(path)
    chain = (target, *target.parents)  # ends at / (or . for a relative path), which stops the search
    probe_dir = next((p for p in chain if p.exists()), chain[-1])
    out: dict[str, Any] = {"path": path, "exists": target.exists(), "ok": False, "free_gib": None, "detail": ""}
    try:
        with tempfile.NamedTemporaryFile(prefix=".mst-preflight-", dir=probe_dir):  # removed on leaving
            pass
        out["ok"] = True  # created and removed
    except OSError as err:
        out["detail"] = f"cannot write in {probe_dir} ({err.strerror or err})"
    with contextlib.suppress(OSError):  # no free space known: the row says nothing of it
        out["free_gib"] = round(shutil.disk_usage(probe_dir).free / GIB, 1)
    return out


def probe(profile: ClusterProfile, run_root: str, under_slurm: bool) -> dict[str, Any]:
    """The report of this rank (a plain dict) on `profile`'s node; `run_root` is absolute (resolved where
    the check started); `under_slurm`: ranks come from Slurm, else this is the single in-process rank. The
    preflight job submits this function itself."""
    ranks = _ranks(profile, under_slurm)
    devices = _devices()
    index = ranks["local_rank"] % devices["count"] if devices["count"] else None
    return {
        "host": socket.gethostname(), **ranks, "versions": _versions(), "devices": devices,
        "step": _step(profile.environment.precision, index),
        "all_reduce": _all_reduce(profile.accelerators.kind, under_slurm, ranks, index),
        "data_roots": [_data_root(name, path) for name, path in profile.storage.data_roots.items()],
        "run_root": _writable(run_root),
        "scratch": _writable(os.path.expandvars(profile.storage.scratch)),
    }
