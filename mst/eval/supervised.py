"""The supervised baseline: the same backbone trained from scratch with labels (the appendix's "vanilla
supervised" row, and the supervised side of the attention-map comparison; no pretrained weights exist here).

Recipe (DeiT's where the paper is silent, [choice]): cross-entropy with label smoothing 0.1 on a linear
head over the final-norm class token; AdamW, lr = cfg.eval.supervised_lr x batch / 256, linear warm-up over
the first 5 % of the steps then cosine to cfg.optim.min_lr, per step; eval.supervised_weight_decay on weight matrices
only; drop path cfg.model.drop_path. Train input: RandomResizedCrop + flip; evaluated after every epoch on
the single centre crop, reported like the linear probes (best and last epoch's top-1/top-5).

Resumable at any step like pre-training: the checkpoint holds the model, optimiser, loss scaler, torch RNG
streams (drop path) and the running sums; data order and augmentations are functions of (seed, epoch, index).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..augment import AugmentedDataset, probe_train_transform
from ..checkpoint import load_checkpoint, weights_sha256
from ..compat import grad_scaler
from ..config import Config, config_from_dict, config_to_dict
from ..data import build_dataset
from ..models import build_backbone
from ..run.rng import get_rng_state, set_rng_state
from ..run.runtime import autocast_context
from ..schedules import cosine
from ..seeding import seed_everything
from ..train.pretrain import param_groups
from .epochs import EpochLoop, epoch_batches, fresh_counters, resume_counters, summarise, topk_correct
from .features import class_count, eval_dataset
from .stage import Stage, StopFn, run_stage

WARMUP_FRACTION = 0.05  # [choice] of all steps


class SupervisedNet(nn.Module):
    """Backbone + linear classifier on the final-norm class token."""

    def __init__(self, cfg: Config, num_classes: int, drop_path: float | None = None):
        super().__init__()
        self.backbone = build_backbone(cfg.model, cfg.augment.global_size, drop_path=drop_path)
        self.head = nn.Linear(self.backbone.embed_dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x).cls)  # [B, classes]


def backbone_digest(model: SupervisedNet) -> str:
    """weights_sha256 of the backbone, named as pre-training names its teacher's ("backbone.*")."""
    return weights_sha256({k: v for k, v in model.state_dict().items() if k.startswith("backbone.")})


def load_supervised(supervised_dir: str | Path):
    """(backbone in eval mode, Config) of a supervised stage folder, for the attention maps."""
    path = Path(supervised_dir) / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; run `mst-eval supervised` first or leave out the "
                                "supervised folder")
    state = load_checkpoint(path, expect=("config", "num_classes", "model"))
    cfg = config_from_dict(state["config"])
    model = SupervisedNet(cfg, state["num_classes"], drop_path=0.0)
    model.load_state_dict(state["model"])
    return model.backbone.eval().requires_grad_(False), cfg


@torch.no_grad()
def evaluate_model(model: nn.Module, loader: DataLoader, stage: Stage) -> tuple[float, float]:
    """(top-1, top-5) in percent on the evaluation split."""
    model.eval()
    c1 = c5 = n = 0
    for images, targets in loader:
        with autocast_context(stage.precision, stage.device):
            logits = model(images.to(stage.device, non_blocking=True)).float()
        a, b = topk_correct(logits, torch.as_tensor(targets).to(stage.device))
        c1, c5, n = c1 + a, c5 + b, n + len(targets)
    model.train()
    return 100.0 * c1 / n, 100.0 * c5 / n


def run_supervised(cfg: Config, out_dir: str | Path, should_stop: StopFn = None, record_extra: dict | None = None,
                   show_progress: bool = True) -> dict:
    """Train the backbone of cfg.model with labels in `out_dir` (stage `supervised`), resuming if possible."""

    def body(stage: Stage) -> dict:
        e, seed, dev = cfg.eval, cfg.train.seed, stage.device
        train_set = AugmentedDataset(build_dataset(cfg.data, "train"), probe_train_transform(cfg.augment), seed)
        test_set = eval_dataset(cfg, "test")
        n_classes = class_count(test_set)
        seed_everything(seed)  # initial weights
        model = SupervisedNet(cfg, n_classes).to(dev)
        weight_decay = e.supervised_weight_decay
        groups = param_groups(model)
        opt = torch.optim.AdamW(groups, lr=0.0, weight_decay=weight_decay, betas=cfg.optim.betas)
        scaler = grad_scaler(dev.type, enabled=stage.precision == "fp16")
        torch.manual_seed(seed + 7919)  # drop path stream
        state = stage.load()
        if state is not None and "model" not in state:
            state = None
        st = resume_counters(stage, fresh_counters(), state)
        if state is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
            set_rng_state(state["rng"])

        def snapshot() -> dict:
            return {**st, "version": 2, "model": model.state_dict(), "optimizer": opt.state_dict(),
                    "scaler": scaler.state_dict(), "rng": get_rng_state(), "config": config_to_dict(cfg),
                    "num_classes": n_classes, "weights_sha256": backbone_digest(model)}

        batch = e.supervised_batch_size
        per_epoch = math.ceil(len(train_set) / batch)
        total = per_epoch * e.supervised_epochs
        peak = e.supervised_lr * batch / 256
        warmup = int(WARMUP_FRACTION * total)
        workers, pin = cfg.data.num_workers, dev.type == "cuda"
        test_loader = DataLoader(test_set, batch_size=e.feature_batch_size, num_workers=workers, pin_memory=pin,
                                 generator=torch.Generator().manual_seed(0))

        def batches(epoch: int, first: int) -> DataLoader:
            train_set.set_epoch(epoch)
            return DataLoader(train_set, batch_sampler=epoch_batches(len(train_set), batch, seed, epoch)[first:],
                              num_workers=workers, pin_memory=pin, generator=torch.Generator().manual_seed(0))

        def loss(images: torch.Tensor, targets: torch.Tensor, step: int) -> tuple[torch.Tensor, float]:
            lr = cosine(step, total, peak, cfg.optim.min_lr, warmup)
            for group in opt.param_groups:
                group["lr"] = lr
            images, targets = images.to(dev, non_blocking=True), torch.as_tensor(targets).to(dev)
            with autocast_context(stage.precision, dev):
                logits = model(images)
            return F.cross_entropy(logits.float(), targets, label_smoothing=e.supervised_label_smoothing), lr

        def update(value: torch.Tensor) -> None:
            opt.zero_grad(set_to_none=True)
            scaler.scale(value).backward()
            scaler.step(opt)
            scaler.update()

        def evaluate_epoch() -> dict[str, float]:
            top1, top5 = evaluate_model(model, test_loader, stage)
            return {"top1": top1, "top5": top5}

        model.train()
        loop = EpochLoop(
            name="supervised", epochs=e.supervised_epochs, per_epoch=per_epoch, batches=batches, loss=loss,
            update=update, evaluate=evaluate_epoch, snapshot=snapshot, checkpoint_every=cfg.train.checkpoint_every,
            non_finite_what="supervised loss", non_finite_fix="Lower eval.supervised_lr or use train.precision=fp32")
        loop.run(stage, st, should_stop, show_progress)
        return stage.record("done", summarise(st["history"]), weights_sha256=backbone_digest(model),
                            n_train=len(train_set), n_test=len(test_set), lr=peak, batch_size=batch,
                            epochs=e.supervised_epochs, weight_decay=weight_decay,
                            label_smoothing=e.supervised_label_smoothing, history=st["history"])

    return run_stage("supervised", cfg, out_dir, record_extra, body)
