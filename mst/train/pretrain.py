"""The MST pre-training loop. Knows nothing of Slurm, YAML or argparse.

One step: the teacher (EMA, no grad) sees the two global crops and gives logits plus its last block's
class-token attention; the lowest-attention patches of each global crop are masked in the student after the
patch projection; the student sees every crop; the decoder restores the global crops; loss = v1 L_rec + v2 L_dino.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .. import distributed as dist
from ..atomic import append_jsonl, atomic_write_json, truncate_jsonl
from ..augment import BatchPhotometric
from ..checkpoint import atomic_torch_save, load_checkpoint, weights_sha256
from ..compat import grad_scaler
from ..config import Config, ConfigError, config_hash, config_to_dict
from ..losses import DINOLoss, restoration_loss
from ..masking import make_mask, masks_anything
from ..run.lifecycle import run_in_folder
from ..run.progress import StepProgress
from ..run.record import make_record, write_failed_record
from ..run.rng import get_rng_state, set_rng_state
from ..run.runtime import (
    Interrupted,
    NonFiniteLoss,
    autocast_context,
    configure_threads,
    pick_device,
    resolve_precision,
)
from ..schedules import cosine, teacher_temperature
from ..seeding import seed_everything
from .clipping import clip_gradients
from .curve import CurveProbe
from .loader import RunLoader, train_dataset
from .nets import Student, Teacher, copy_student_into_teacher, ema_update

log = logging.getLogger(__name__)


def param_groups(model: nn.Module) -> list[dict]:
    """DINO's groups: biases and 1-D tensors (norms) get no weight decay; every other tensor decays, the
    class token, position embeddings and [MASK] token (all 3-D) included."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


CHECKPOINT_KEYS = ("config", "step", "student", "teacher", "optimizer", "scaler", "dino_loss", "rng",
                   "wall_time_s")


def gradient_norms(losses: list[torch.Tensor], params: list[torch.Tensor]) -> list[float]:
    """The L2 norm of each loss's gradient with respect to `params` (together), leaving .grad untouched;
    the graph is kept for the step's own backward. A parameter a loss does not reach contributes 0."""
    norms = []
    for loss in losses:
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        norms.append(math.sqrt(math.fsum(float(g.float().pow(2).sum()) for g in grads if g is not None)))
    return norms


class PretrainTrainer:
    def __init__(self, cfg: Config, out_dir: Path, dataset=None):
        """`dataset` (items: list of crops, label) defaults to the configured data set with multi-crop views."""
        self.cfg, self.out = cfg, Path(out_dir)
        self.device = pick_device()
        dist.init_from_env(self.device)
        self.rank, self.world = dist.rank(), dist.world_size()
        configure_threads(cfg.train.threads, cfg.data.num_workers, self.device)
        if cfg.train.batch_size % self.world:
            raise ValueError(f"train.batch_size={cfg.train.batch_size} is not divisible by {self.world} ranks; "
                             f"set it to a multiple of {self.world}")
        self.precision = resolve_precision(cfg.train.precision, self.device)

        seed_everything(cfg.train.seed)            # identical initial weights on every rank
        self.student = Student(cfg).to(self.device)
        self.teacher = Teacher(cfg).to(self.device)
        copy_student_into_teacher(self.student, self.teacher)
        masking = masks_anything(cfg.mask.strategy, cfg.mask.ratio, cfg.mask.prob)
        self.student.backbone.mask_token.requires_grad_(masking)
        self.dino_loss = DINOLoss(cfg.model.out_dim, cfg.loss.student_temp, cfg.loss.center_momentum).to(self.device)
        if self.world > 1:
            if self.device.type == "cuda":   # torch's SyncBatchNorm runs on GPUs only; gloo ranks keep local BN
                self.student = nn.SyncBatchNorm.convert_sync_batchnorm(self.student)
            self.student_ddp = DistributedDataParallel(
                self.student, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        else:
            self.student_ddp = self.student
        self.optimizer = torch.optim.AdamW(param_groups(self.student), lr=0.0, betas=cfg.optim.betas)
        self.scaler = grad_scaler(self.device.type, enabled=self.precision == "fp16")
        # masking draws come from their own stream so that they are saved and restored exactly
        self.mask_gen = torch.Generator(device=self.device)
        self.mask_gen.manual_seed(cfg.train.seed * 1000 + self.rank)
        torch.manual_seed(cfg.train.seed + 7919 * (self.rank + 1))   # drop path differs across ranks

        self.dataset = train_dataset(cfg) if dataset is None else dataset
        # split backend: the loader hands over uint8 crops; their photometric ops run here, on the step's device
        self.photometric = BatchPhotometric(cfg.augment) if cfg.augment.backend == "split" else None
        self.skipped_images = 0    # unreadable image files left out of their batch (split backend)
        self.steps_per_epoch = len(self.dataset) // cfg.train.batch_size
        if self.steps_per_epoch == 0:
            raise ConfigError(f"config key 'train.batch_size': {cfg.train.batch_size} exceeds the "
                              f"{len(self.dataset)} training images; lower train.batch_size or raise "
                              "data.train_subset")
        self.total_steps = self.steps_per_epoch * cfg.train.epochs
        self.step = 0              # global step = number of optimiser updates done
        self.wall_before = 0.0     # wall time spent in earlier attempts of this run
        self.last = {}
        self.balance = {}          # the latest loss-balance measurement (measure_balance)
        self.curve_probe = CurveProbe(cfg, self.device) if cfg.eval.curve_steps else None
        self.curve: list[dict] = []   # the learning curve's points: {"step", top1@k, top5@k ...}

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {
            "version": 2, "config": config_to_dict(self.cfg), "step": self.step,
            "student": self.student.state_dict(), "teacher": self.teacher.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
            "dino_loss": self.dino_loss.state_dict(), "rng": get_rng_state(self.mask_gen),
            "wall_time_s": self.wall_before + (time.time() - self.t_start), "last": self.last,
            "skipped_images": self.skipped_images,
            "balance": self.balance,
            "curve": self.curve,
            "weights_sha256": self.digest(),
        }

    def digest(self) -> str:
        teacher = self.teacher.state_dict()
        return weights_sha256({k: v for k, v in teacher.items() if k.startswith("backbone.")})

    def save(self) -> None:
        if dist.is_main():
            atomic_torch_save(self.state_dict(), self.out / "checkpoint.pt")
        dist.barrier()

    def resume(self) -> bool:
        path = self.out / "checkpoint.pt"
        if not path.is_file():
            self._truncate_metrics(-1)   # every line of an attempt that died before its first checkpoint
            return False
        state = load_checkpoint(path, self.device, expect=CHECKPOINT_KEYS)
        self.student.load_state_dict(state["student"])
        self.teacher.load_state_dict(state["teacher"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.dino_loss.load_state_dict(state["dino_loss"])
        set_rng_state(state["rng"], self.mask_gen, self.rank)
        self.step, self.wall_before, self.last = state["step"], state["wall_time_s"], state.get("last", {})
        self.skipped_images = state.get("skipped_images", 0)
        self.balance = state.get("balance", {})
        self.curve = state.get("curve", [])
        self._truncate_metrics(self.step)
        log.info("resumed from %s at step %d", path, self.step)
        return True

    def _truncate_metrics(self, last_step: int) -> None:
        """Drop metric lines logged after `last_step` (the checkpoint's), so a resumed log reads like an
        uninterrupted one; -1 drops them all (a curve point at step 0 comes before any checkpoint)."""
        if dist.is_main():
            truncate_jsonl(self.out / "metrics.jsonl", lambda line: line.get("step", 0) <= last_step)

    # ------------------------------------------------------------------ one step
    def schedules(self) -> tuple[float, float, float, float]:
        o, n = self.cfg.optim, self.steps_per_epoch
        lr = cosine(self.step, self.total_steps, o.lr * self.cfg.train.batch_size / 256, o.min_lr,
                    o.warmup_epochs * n)
        wd = cosine(self.step, self.total_steps, o.weight_decay, o.weight_decay_end)
        momentum = cosine(self.step, self.total_steps, o.momentum_teacher, o.momentum_teacher_end)
        t_temp = teacher_temperature(self.step // n, self.cfg.loss.warmup_teacher_temp, self.cfg.loss.teacher_temp,
                                     self.cfg.loss.warmup_teacher_temp_epochs)
        return lr, wd, momentum, t_temp

    def views(self, batch) -> list[torch.Tensor]:
        """A loader batch -> the step's crops: (crops, labels), or for the split backend (uint8 crops, labels,
        seeds, skipped), whose photometric ops run here as batched tensor ops on the step's device."""
        if self.photometric is None:
            return batch[0]
        crops, _, seeds, skipped = batch
        self.skipped_images += int(skipped)
        return self.photometric([c.to(self.device, non_blocking=True) for c in crops], seeds.tolist())

    def train_step(self, crops: list[torch.Tensor]) -> dict[str, float]:
        cfg, dev = self.cfg, self.device
        lr, wd, momentum, t_temp = self.schedules()
        self.optimizer.param_groups[0].update(lr=lr, weight_decay=wd)
        self.optimizer.param_groups[1].update(lr=lr)
        globals_ = torch.cat([c.to(dev, non_blocking=True) for c in crops[:2]])          # [2B, 3, G, G]
        locals_ = torch.cat([c.to(dev, non_blocking=True) for c in crops[2:]]) if len(crops) > 2 else None
        B = crops[0].shape[0]
        p = self.student.backbone.patch_size
        L = (globals_.shape[2] // p) * (globals_.shape[3] // p)

        with autocast_context(self.precision, dev):
            need_attn = cfg.mask.strategy == "attention"
            t_logits, attn = self.teacher(globals_, with_attention=need_attn)             # [2B, K], [2B, H, L]
            mask = make_mask(cfg.mask.strategy, attn, 2 * B, L, cfg.mask.ratio, cfg.mask.prob, self.mask_gen, dev)
            s_logits, restored = self.student_ddp(globals_, locals_, mask, self.mask_gen)
            loss_dino = self.dino_loss(list(s_logits.float().chunk(len(crops))),
                                       list(t_logits.float().chunk(2)), t_temp)
            loss_rec = torch.zeros((), device=dev)
            if restored is not None:
                masks = mask.chunk(2) if mask is not None else (None, None)
                loss_rec = 0.5 * sum(restoration_loss(r, x, m, p, cfg.loss.restore_target) for r, x, m in
                                     zip(restored.chunk(2), globals_.chunk(2), masks))
            loss = cfg.loss.restore_weight * loss_rec + cfg.loss.dino_weight * loss_dino

        # the global means over ranks: what is logged, and a non-finite value on any rank stops every rank
        stats = dist.all_reduce_mean(torch.stack([loss, loss_dino, loss_rec]).detach().float())
        loss_value, dino_value, rec_value = stats.tolist()
        if not math.isfinite(loss_value):
            raise NonFiniteLoss(self.step + 1, loss_value)
        balance = self.measure_balance(loss_rec, loss_dino) if self.balance_due() else {}
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        clip_gradients(self.student.parameters(), cfg.optim.clip_grad, cfg.optim.clip_mode)
        if self.step < cfg.optim.freeze_last_layer_epochs * self.steps_per_epoch:
            for q in self.student.head.last_layer.parameters():
                q.grad = None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        ema_update(self.teacher, self.student, momentum)
        self.step += 1
        masked = float(mask.float().mean()) if mask is not None else 0.0
        return {"loss": loss_value, "loss_dino": dino_value, "loss_rec": rec_value, "lr": lr,
                "wd": wd, "momentum": momentum, "teacher_temp": t_temp, "masked_frac": masked, **balance}

    def balance_due(self) -> bool:
        every = self.cfg.train.balance_every
        done = self.step + 1     # the step count after this update: measured at every multiple and the last
        return every > 0 and (done % every == 0 or done == self.total_steps)

    def measure_balance(self, loss_rec: torch.Tensor, loss_dino: torch.Tensor) -> dict[str, float]:
        """How the two weighted losses pull on the backbone: the norms of the gradients of v1 L_rec and of
        v2 L_dino with respect to the student backbone's parameters, and their ratio (1 = equal pull).
        Each rank measures its own batch; the numbers logged are the means over ranks."""
        cfg = self.cfg.loss
        if cfg.restore_weight == 0 or cfg.dino_weight == 0 or not loss_rec.requires_grad:
            return {}   # one of the two losses is off: nothing to balance
        params = [q for q in self.student.backbone.parameters() if q.requires_grad]
        rec, dino = gradient_norms([cfg.restore_weight * loss_rec, cfg.dino_weight * loss_dino], params)
        rec, dino = dist.all_reduce_mean(torch.tensor([rec, dino], dtype=torch.float64, device=self.device)).tolist()
        self.balance = {"grad_norm_rec": rec, "grad_norm_dino": dino,
                        "grad_ratio_rec_dino": rec / dino if dino > 0 else None, "balance_step": self.step + 1}
        return self.balance

    def measure_curve(self, epoch: int, metrics_path: Path) -> None:
        """The learning curve's point at this step. It comes before the step's checkpoint, so a run resumed from
        that checkpoint already holds it and one resumed from an earlier checkpoint measures it again."""
        nets = {"teacher": self.teacher, "student": self.student}
        metrics = self.curve_probe.evaluate(nets[self.cfg.eval.knn_source].backbone)
        self.curve.append({"step": self.step, **metrics})
        if dist.is_main():
            append_jsonl(metrics_path, {"step": self.step, "epoch": epoch, "curve": metrics})

    # ------------------------------------------------------------------ loop
    def fit(self, should_stop: Callable[[], bool] | None, show_progress: bool = True) -> dict:
        self.t_start = time.time()
        resumed = self.resume()
        cfg = self.cfg
        metrics_path = self.out / "metrics.jsonl"
        if self.curve_probe is not None and not resumed and self.curve_probe.due(0):
            self.measure_curve(0, metrics_path)   # the random initialisation
        progress = StepProgress(self.total_steps, self.step, enabled=show_progress and dist.is_main())
        loader = RunLoader(self.dataset, cfg, self.world, self.rank, self.device)
        with progress:
            while self.step < self.total_steps:
                epoch, in_epoch = divmod(self.step, self.steps_per_epoch)
                self.student.train()
                self.teacher.train()
                for batch in loader.epoch(epoch, in_epoch):
                    if should_stop is not None and dist.any_rank(should_stop(), self.device):
                        self.save()
                        raise Interrupted(self.step)
                    self.last = self.train_step(self.views(batch))
                    progress.update(self.step, self.last)
                    logged = self.step % cfg.train.log_every == 0 or "balance_step" in self.last
                    if dist.is_main() and (logged or self.step == self.total_steps):
                        append_jsonl(metrics_path, {"step": self.step, "epoch": epoch, **self.last})
                    if self.curve_probe is not None and self.curve_probe.due(self.step):
                        self.measure_curve(epoch, metrics_path)
                    if self.step % cfg.train.checkpoint_every == 0 or self.step % self.steps_per_epoch == 0:
                        self.save()
                    if self.step >= self.total_steps:
                        break
        return {"wall_time_s": self.wall_before + time.time() - self.t_start}


def run_pretrain(cfg: Config, out_dir: str | Path, should_stop: Callable[[], bool] | None = None,
                 record_extra: dict | None = None, show_progress: bool = True) -> dict:
    """Pre-train in `out_dir` (resuming from its checkpoint) and return the result record.

    The stage's life in its folder is every stage's (mst.run.lifecycle): locked, not re-run when done,
    claimed for the config. A non-finite loss writes a `failed` record naming the step and leaves the last good
    checkpoint as it was. `Interrupted` propagates after a checkpoint is saved. A process group this call sets
    up (from RANK / WORLD_SIZE) is destroyed when it returns or raises; a group the caller had already
    initialised is left for the caller to end.
    """
    # dist may not be set up yet: rank 0 of the launch (torchrun / the job layer's RANK) holds the lock
    owns_group = not dist.is_distributed()
    main = int(os.environ.get("RANK", "0")) == 0 if owns_group else dist.is_main()
    try:
        return run_in_folder("pretrain", cfg, out_dir, partial(_PretrainRun, cfg, record_extra=record_extra),
                             partial(_PretrainRun.fit, should_stop=should_stop, show_progress=show_progress),
                             record_extra=record_extra, main=main, claim_first=True)
    finally:
        if owns_group:  # after the record is written: is_main() needs the group until then
            dist.cleanup()


class _PretrainRun:
    """One attempt at pre-training in a claimed folder: the trainer, and the record it leaves."""

    def __init__(self, cfg: Config, out: Path, _prepared: None, record_extra: dict | None):
        self.cfg, self.out, self.record_extra = cfg, out, record_extra
        self.t0 = time.time()
        self.trainer: PretrainTrainer | None = None

    def fit(self, should_stop: Callable[[], bool] | None, show_progress: bool) -> dict:
        cfg = self.cfg
        self.trainer = trainer = PretrainTrainer(cfg, self.out)
        info = trainer.fit(should_stop, show_progress)
        record = make_record(
            "pretrain", config_to_dict(cfg), config_hash(cfg), "done",
            {"loss": trainer.last.get("loss"), "loss_dino": trainer.last.get("loss_dino"),
             "loss_rec": trainer.last.get("loss_rec"), "steps": trainer.step, "epochs": cfg.train.epochs,
             "skipped_images": trainer.skipped_images, **trainer.balance},
            info["wall_time_s"], self.record_extra, weights_sha256=trainer.digest(), world_size=trainer.world,
            device=str(trainer.device), precision=trainer.precision,
            **({"curve": trainer.curve} if trainer.curve_probe is not None else {}))
        if dist.is_main():
            atomic_write_json(self.out / "result.json", record)
        return record

    def fail(self, err: BaseException) -> None:
        trainer = self.trainer
        wall = (trainer.wall_before if trainer else 0.0) + time.time() - self.t0
        if dist.is_main():
            write_failed_record(self.out, "pretrain", self.cfg, err, {"steps": trainer.step if trainer else 0},
                                wall, self.record_extra)
