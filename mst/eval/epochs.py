"""The epoch loop both probes train with: the linear probe on frozen features (the random-init and raw-pixel
baselines' probes too, writing nothing) and the supervised baseline.

What they share lives here once: data order as a function of (seed, epoch), the stop poll and checkpoint
before each step, the non-finite loss check, the running loss sums, progress, periodic checkpoints, the
evaluation after every epoch, its metrics.jsonl line, and the best/last summary. What differs (the model,
its optimiser, the learning-rate schedule, where a batch comes from) comes in as callables.

The loop's counters `st` (epoch, batch, loss_sum, loss_count, history) are part of each stage's checkpoint,
so a resumed probe continues at the very batch it stopped before: bitwise identical on the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from ..run.progress import StepProgress
from ..run.runtime import NonFiniteLoss
from ..seeding import sample_seed
from .stage import Stage, StopFn, interrupt, stop_requested


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The shuffled batches of one epoch, a function of (seed, epoch) only (the last one may be short)."""
    g = torch.Generator().manual_seed(sample_seed(seed, epoch, -1))
    return [b.tolist() for b in torch.randperm(n, generator=g).split(batch_size)]


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[int]:
    """Number of samples whose label is among the k highest logits, for each k (k clipped to the classes)."""
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices  # [B, kmax]
    hit = top == targets.unsqueeze(1)
    return [int(hit[:, :k].any(dim=1).sum()) for k in ks]


def summarise(history: list[dict]) -> dict[str, float]:
    """The contract's metrics from the per-epoch history (best = highest top-1, earliest on ties)."""
    best = max(range(len(history)), key=lambda i: (history[i]["top1"], -i))
    return {"top1_best": history[best]["top1"], "top5_best": history[best]["top5"],
            "top1_last": history[-1]["top1"], "top5_last": history[-1]["top5"], "best_epoch": best + 1}


def fresh_counters(**fields: Any) -> dict[str, Any]:
    """The loop's counters before the first step, after the stage's own identifying `fields`."""
    return {**fields, "epoch": 0, "batch": 0, "loss_sum": 0.0, "loss_count": 0, "history": []}


def resume_counters(stage: Stage, st: dict[str, Any], state: dict | None) -> dict[str, Any]:
    """The counters a checkpoint `state` holds (the keys of `st`), or `st` itself without one; metrics.jsonl
    is cut back to the checkpoint, so that a resumed log reads like an uninterrupted one."""
    if state is None:
        stage.truncate_log(lambda line: False)  # lines of an attempt killed before its first checkpoint
        return st
    st = {k: state[k] for k in st}
    stage.truncate_log(lambda line: line.get("epoch", 0) <= st["epoch"])
    return st


@dataclass(frozen=True)
class EpochLoop:
    """How one probe trains; `run` drives it over the epochs the counters say are left."""

    name: str
    """Progress label."""
    epochs: int
    per_epoch: int
    """Steps per epoch (the last batch may be short)."""
    batches: Callable[[int, int], Iterable[tuple[Any, Any]]]
    """(epoch, first batch) -> the epoch's (inputs, targets) from that batch on."""
    loss: Callable[[Any, Any, int], tuple[torch.Tensor, float]]
    """(inputs, targets, step) -> (loss, learning rate of the step): sets the lr, runs the forward pass."""
    update: Callable[[torch.Tensor], None]
    """One optimiser step on a finite loss (zero grads, backward, step)."""
    evaluate: Callable[[], dict[str, float]]
    """The metrics.jsonl fields (top1, top5, ...) after an epoch of training."""
    snapshot: Callable[[], dict]
    """The stage's checkpoint state, counters included."""
    checkpoint_every: int
    non_finite_what: str
    non_finite_fix: str
    persist: bool = True
    """False: the loop writes nothing to its stage (no checkpoint, no metrics.jsonl line) and is not stopped,
    for a probe trained inside another stage's folder (the baselines): its counters live only in memory."""

    def run(self, stage: Stage, st: dict[str, Any], should_stop: StopFn, show_progress: bool) -> None:
        """Train from the counters in `st` (updated in place) to the last epoch, checkpointing as it goes."""
        done = st["epoch"] * self.per_epoch + st["batch"]
        with StepProgress(self.per_epoch * self.epochs, done, show_progress, self.name) as bar:
            while st["epoch"] < self.epochs:
                epoch = st["epoch"]
                for x, y in self.batches(epoch, st["batch"]):
                    step = epoch * self.per_epoch + st["batch"]
                    if self.persist and stop_requested(should_stop):
                        interrupt(stage, self.snapshot(), step)
                    loss, lr = self.loss(x, y, step)
                    if not math.isfinite(loss.item()):  # the step is named only where a checkpoint is kept
                        raise NonFiniteLoss(step + 1 if self.persist else None, loss.item(),
                                            what=self.non_finite_what, fix=self.non_finite_fix)
                    self.update(loss)
                    st["loss_sum"] += loss.item() * len(y)
                    st["loss_count"] += len(y)
                    st["batch"] += 1
                    bar.update(step + 1, {"loss": loss.item(), "lr": lr})
                    if self.persist and (step + 1) % self.checkpoint_every == 0:
                        stage.save(self.snapshot())
                line = {"epoch": epoch + 1, **self.evaluate(),
                        "loss": st["loss_sum"] / max(st["loss_count"], 1)}
                st["history"].append(line)
                st.update(epoch=epoch + 1, batch=0, loss_sum=0.0, loss_count=0)
                if self.persist:
                    stage.log(line)
                    stage.save(self.snapshot())
