"""Device, precision and the exceptions that end a training loop early."""

from __future__ import annotations

import os

import torch

from .. import compat
from .. import distributed as dist


class Interrupted(Exception):
    """Raised at a step boundary after a checkpoint was saved because should_stop() asked for it."""

    def __init__(self, step: int):
        super().__init__(f"interrupted at step {step}; checkpoint saved, rerun to resume")
        self.step = step


class NonFiniteLoss(RuntimeError):
    """A loss (or a stage's result) that is NaN or infinite: the stage fails instead of recording it."""

    def __init__(self, step: int | None, value: float, fix: str = "Lower optim.lr or use train.precision=fp32",
                 what: str = "loss"):
        where = f" at step {step}; the last good checkpoint is kept." if step is not None else ";"
        super().__init__(f"non-finite {what} ({value}){where} {fix}")
        self.step = step


def pick_device() -> torch.device:
    """The rank's accelerator (CUDA or ROCm, both behind torch.cuda) or the CPU."""
    if torch.cuda.is_available():
        device = torch.device("cuda", dist.local_rank() % torch.cuda.device_count())
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")


def configure_threads(threads: int, num_workers: int, device: torch.device) -> int:
    """Set torch's intra-op threads: `threads` if given, else on the CPU the cores left to this process after
    its data-loader workers. More busy threads than cores makes OpenMP spin: a smoke step measured 6x slower
    with 2 threads beside a busy worker on 2 cores than with 1."""
    if threads == 0 and device.type == "cpu":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        if "SLURM_CPUS_PER_TASK" in os.environ:     # a Slurm task owns only what it asked for
            cores = int(os.environ["SLURM_CPUS_PER_TASK"])
        else:                                       # torchrun: the node's cores are shared by its ranks
            cores //= max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1)
        threads = max(1, cores - num_workers)
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def resolve_precision(precision: str, device: torch.device) -> str:
    """auto -> bf16 where the GPU supports it, else fp16 (with loss scaling); always fp32 on the CPU,
    where bf16 autocast measured slower than fp32."""
    if device.type != "cuda":
        return "fp32"
    if precision == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return precision


def autocast_context(precision: str, device: torch.device):
    return compat.autocast(precision, device.type)
