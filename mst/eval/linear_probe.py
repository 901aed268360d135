"""Linear probing on a frozen backbone [appendix §5, DINO's linear evaluation]; the `linear_*` stages run it
(mst/eval/linear.py), and so do the baselines (mst/eval/baselines.py).

- Probe inputs: `cls` (the last block's final-norm class token) or `dino` (the last 4 blocks' class tokens,
  each through the final norm, concatenated).
- SGD (cfg.eval.linear_momentum, linear_weight_decay), lr from cfg.eval.linear_recipe: `appendix` 0.00024 as
  §5 prints it (the paper preset), `dino` DINO's 0.001 x batch / 256, `custom` cfg.eval.linear_lr; cosine to 0
  over the epochs, set per epoch as DINO does. The layer is DINO's: weights N(0, 0.01), bias 0. The record
  names the recipe and the lr.
- Train input: RandomResizedCrop + flip (`probe_train_transform`), through the frozen backbone every step.
  `cached_features`: features of the centre-crop images are extracted once and reused every epoch (much
  faster, no augmentation); the result says which mode ran.
- Evaluated after every epoch on the single centre crop. Test features are extracted once: the backbone is
  frozen and the eval transform deterministic, so every epoch would compute the same ones.
- Reports the best epoch's (by top-1) and the last epoch's top-1/top-5; `best_epoch` counts from 1.
- `train_probe` is the training itself, on any frozen backbone of a stage: the stage's own probe checkpoints
  into the stage and logs its metrics.jsonl; the random-init and raw-pixel baselines (mst/eval/baselines.py)
  train through it inside the stage's folder and write nothing there but their feature files.
- Resumable at any step: data order comes from (seed, epoch), augmentations from (seed, epoch, sample),
  and the checkpoint holds the layer, the optimiser and the running sums, so a resumed probe is bitwise
  identical to an uninterrupted one (on the CPU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..augment import AugmentedDataset, probe_train_transform
from ..config import linear_probe_lr
from ..data import build_dataset
from .epochs import EpochLoop, epoch_batches, fresh_counters, topk_correct
from .features import class_count, embed, eval_dataset, extract_features, feature_dim
from .stage import Stage, StopFn, forward_context

PROBES = ("cls", "dino")
PROBE_NON_FINITE = ("probe loss", "Lower eval.linear_lr or check the pre-training's losses")  # (what, fix)


def make_probe(dim: int, num_classes: int, seed: int, norm: str = "none") -> nn.Module:
    """DINO's linear layer: weights N(0, 0.01), bias 0, drawn from a generator of its own; under
    norm="batchnorm" behind a BatchNorm without affine parameters (eval.linear_norm)."""
    layer = nn.Linear(dim, num_classes)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * 0.01)
        layer.bias.zero_()
    if norm == "batchnorm":
        return nn.Sequential(nn.BatchNorm1d(dim, affine=False, eps=1e-6), layer)
    return layer


def epoch_lr(base_lr: float, epoch: int, epochs: int) -> float:
    """Cosine from base_lr (epoch 0) towards 0, one value per epoch."""
    return 0.5 * base_lr * (1 + math.cos(math.pi * epoch / epochs))


@torch.no_grad()
def evaluate(layer: nn.Module, features: torch.Tensor, labels: torch.Tensor, device: torch.device,
             batch: int = 4096) -> tuple[float, float]:
    """(top-1, top-5) in percent of `layer` on features [N, D]."""
    layer.eval()
    c1 = c5 = 0
    for start in range(0, len(labels), batch):
        x = features[start:start + batch].to(device)
        y = labels[start:start + batch].to(device)
        a, b = topk_correct(layer(x), y)
        c1, c5 = c1 + a, c5 + b
    layer.train()
    return 100.0 * c1 / len(labels), 100.0 * c5 / len(labels)


@dataclass(frozen=True)
class TrainedProbe:
    """What a probe's training reports: its per-epoch metrics and the facts its record states."""

    history: list[dict]
    """One line per epoch: top1, top5, lr, loss (the metrics.jsonl lines)."""
    n_train: int
    n_test: int
    feature_dim: int
    lr: float
    """The base learning rate, epoch 0 of the cosine."""


def train_probe(stage: Stage, backbone: nn.Module, probe: str, cached: bool, st: dict | None = None,
                state: dict | None = None, *, should_stop: StopFn = None, show_progress: bool = False,
                features_prefix: str = "", non_finite: tuple[str, str] = PROBE_NON_FINITE) -> TrainedProbe:
    """Train and evaluate a linear probe on the `probe` features of the frozen `backbone`, with the stage's
    config, device and precision; the features are cached as <stage>/features/<features_prefix><split>_<probe>.

    With `st` (the loop's counters, fresh or resumed; `state`: the stage's checkpoint they came from) this is the
    stage's own probe: it checkpoints into the stage, logs metrics.jsonl and stops when `should_stop()` says so.
    Without, it is a probe of its own inside the stage (a baseline): fresh counters, no checkpoint, no log
    line, not stoppable. `non_finite`: (what, fix) of the error a non-finite loss raises.
    """
    cfg, e, seed, dev = stage.cfg, stage.cfg.eval, stage.cfg.train.seed, stage.device
    persist = st is not None
    test_set = eval_dataset(cfg, "test")
    test_f, test_y = extract_features(stage, backbone, test_set, probe, f"{features_prefix}test_{probe}",
                                      should_stop, show_progress)
    if cached:
        train_f, train_y = extract_features(stage, backbone, eval_dataset(cfg, "train"), probe,
                                            f"{features_prefix}train_{probe}", should_stop, show_progress)
        n_train = len(train_y)
    else:
        train_aug = AugmentedDataset(build_dataset(cfg.data, "train"), probe_train_transform(cfg.augment), seed)
        n_train = len(train_aug)

    layer = make_probe(feature_dim(backbone, probe), class_count(test_set), seed, e.linear_norm).to(dev)
    base_lr = linear_probe_lr(e)
    opt = torch.optim.SGD(layer.parameters(), lr=base_lr, momentum=e.linear_momentum,
                          weight_decay=e.linear_weight_decay)
    st = fresh_counters() if st is None else st
    if state is not None:
        layer.load_state_dict(state["linear"])
        opt.load_state_dict(state["optimizer"])
    lr = base_lr

    def batches(epoch: int, first: int):
        nonlocal lr
        lr = epoch_lr(base_lr, epoch, e.linear_epochs)  # DINO's per-epoch cosine
        for group in opt.param_groups:
            group["lr"] = lr
        order = epoch_batches(n_train, e.linear_batch_size, seed, epoch)[first:]
        if cached:
            return ((train_f[idx], train_y[idx]) for idx in map(torch.tensor, order))
        train_aug.set_epoch(epoch)
        return DataLoader(train_aug, batch_sampler=order, num_workers=cfg.data.num_workers,
                          pin_memory=dev.type == "cuda", generator=torch.Generator().manual_seed(0))

    def loss(x: torch.Tensor, y: torch.Tensor, step: int) -> tuple[torch.Tensor, float]:
        x, y = x.to(dev, non_blocking=True), torch.as_tensor(y).to(dev, non_blocking=True)
        if not cached:
            with torch.no_grad(), forward_context(stage):
                x = embed(backbone, x, probe)  # [B, D] frozen features
        return F.cross_entropy(layer(x.float()), y), lr

    def update(value: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()

    def evaluate_epoch() -> dict[str, float]:
        top1, top5 = evaluate(layer, test_f, test_y, dev)
        return {"top1": top1, "top5": top5, "lr": lr}

    layer.train()
    loop = EpochLoop(
        name=f"{features_prefix}linear_{probe}", epochs=e.linear_epochs,
        per_epoch=math.ceil(n_train / e.linear_batch_size), batches=batches, loss=loss, update=update,
        evaluate=evaluate_epoch, snapshot=lambda: {**st, "linear": layer.state_dict(), "optimizer": opt.state_dict()},
        checkpoint_every=cfg.train.checkpoint_every, non_finite_what=non_finite[0], non_finite_fix=non_finite[1],
        persist=persist)
    loop.run(stage, st, should_stop if persist else None, show_progress)
    return TrainedProbe(st["history"], n_train, len(test_y), feature_dim(backbone, probe), base_lr)
