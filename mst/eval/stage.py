"""What every evaluation stage shares: the done check, wall time across resumes, the result record,
failure records, the metrics log, the device and the frozen backbone it reads.

Evaluation stages run in one process on one device (the job layer starts one task for them).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..atomic import append_jsonl, atomic_write_json, read_json, truncate_jsonl
from ..checkpoint import atomic_torch_save, load_checkpoint
from ..config import Config, config_hash, config_to_dict
from ..run.folder import RunFolderMismatch
from ..run.lifecycle import run_in_folder
from ..run.record import error_line, make_record, write_failed_record
from ..run.runtime import Interrupted, NonFiniteLoss, configure_threads, pick_device, resolve_precision
from ..weights import WeightsFile

StopFn = Callable[[], bool] | None


class PretrainUnfinished(ValueError):
    """The pre-training to evaluate did not finish (interrupted, failed or still running)."""


def pretrain_status(pretrain_dir: str | Path, allow_partial: bool = False) -> dict[str, Any]:
    """Fields the evaluation record carries about the pre-training it read: {} for a finished one.

    An unfinished or failed pre-training is refused (PretrainUnfinished, one line) unless `allow_partial`,
    which labels the record `partial: true` with the pre-training's status and steps.
    """
    record = read_json(Path(pretrain_dir) / "result.json")
    status = record.get("status") if isinstance(record, dict) else None
    if status == "done" or not (Path(pretrain_dir) / "checkpoint.pt").is_file():
        return {}  # finished, or nothing to evaluate: loading the backbone says so and the failure is recorded
    state = "no result.json: interrupted, preempted or still running" if status is None else f"status {status}"
    if not allow_partial:
        raise PretrainUnfinished(f"pre-training in {pretrain_dir} has not finished ({state}); finish it first "
                                 "(rerun mst-pretrain on it) or pass --allow-partial to record a partial evaluation")
    steps = (record or {}).get("metrics", {}).get("steps") if isinstance(record, dict) else None
    return {"partial": True, "pretrain_status": status or "unfinished", "pretrain_steps": steps}


def source_fields(source: str | Path | WeightsFile | None, allow_partial: bool = False) -> dict[str, Any]:
    """Fields the record carries about the weights a stage reads: a pre-training folder's (pretrain_status), or
    a weights file's (where it is, its digest, its naming). A bad weights file raises WeightsError here, before
    anything is written."""
    if source is None:
        return {}
    if isinstance(source, WeightsFile):
        return source.record_fields()
    return pretrain_status(source, allow_partial)


def stop_requested(should_stop: StopFn) -> bool:
    return should_stop is not None and bool(should_stop())


class Stage:
    """One evaluation stage in `out_dir`: its checkpoint, metrics log, timing and result record."""

    def __init__(self, name: str, cfg: Config, out_dir: str | Path, record_extra: dict | None = None,
                 pretrain_fields: dict[str, Any] | None = None):
        self.name, self.cfg = name, cfg
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.record_extra = record_extra
        self.pretrain_fields = dict(pretrain_fields or {})  # `partial` labels of an unfinished pre-training
        self.t0 = time.time()
        self.wall_before = 0.0  # wall time of earlier attempts, carried in the checkpoint
        self.state: dict = {}  # the last state loaded or saved; save() without a state rewrites it
        self.device = pick_device()
        configure_threads(cfg.train.threads, cfg.data.num_workers, self.device)
        self.precision = resolve_precision(cfg.train.precision, self.device)

    # ---------------------------------------------------------------- checkpoint
    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def load(self) -> dict | None:
        if not self.checkpoint_path.is_file():
            return None
        state = load_checkpoint(self.checkpoint_path, expect=("stage",))
        if state["stage"] != self.name:
            raise RunFolderMismatch(f"{self.out} holds a '{state['stage']}' stage, not '{self.name}'; "
                                    "use another --out folder")
        self.wall_before = float(state.get("wall_time_s", 0.0))
        self.state = state
        return state

    def save(self, state: dict | None = None) -> None:
        """Write `state` (or the last one again, with the wall time brought up to date) atomically."""
        if state is not None:
            self.state = state
        atomic_torch_save({**self.state, "stage": self.name, "config_hash": config_hash(self.cfg),
                           "wall_time_s": self.wall_time()},
                          self.checkpoint_path)

    def wall_time(self) -> float:
        return self.wall_before + time.time() - self.t0

    # ---------------------------------------------------------------- metrics.jsonl
    def log(self, line: dict) -> None:
        append_jsonl(self.out / "metrics.jsonl", line)

    def truncate_log(self, keep: Callable[[dict], bool]) -> None:
        """Drop lines logged after the checkpoint, so that a resumed log reads like an uninterrupted one."""
        truncate_jsonl(self.out / "metrics.jsonl", keep)

    # ---------------------------------------------------------------- result.json
    @staticmethod
    def check_finite(metrics: dict[str, Any]) -> None:
        """Raise NonFiniteLoss naming the first NaN/inf metric: a `done` record holds finite numbers only."""
        bad = {k: v for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)}
        if bad:
            name, value = next(iter(bad.items()))
            raise NonFiniteLoss(None, value, what=f"metric '{name}'",
                                fix="the checkpoint's weights or the stage's settings give NaN/inf; "
                                    "check the pre-training's losses")

    def record(self, status: str, metrics: dict[str, Any], error: str | None = None, **fields: Any) -> dict:
        if status == "done":
            self.check_finite(metrics)
        else:
            return write_failed_record(self.out, self.name, self.cfg, error or status, metrics, self.wall_time(),
                                       self.record_extra, device=str(self.device), precision=self.precision,
                                       **{**fields, **self.pretrain_fields})
        # what the stage read (a pre-training or a weights file) says where its features came from
        record = make_record(self.name, config_to_dict(self.cfg), config_hash(self.cfg), status, metrics,
                             self.wall_time(), self.record_extra, error=error, device=str(self.device),
                             precision=self.precision, **{**fields, **self.pretrain_fields})
        atomic_write_json(self.out / "result.json", record)
        return record

    def fail(self, err: BaseException, **fields: Any) -> None:
        self.record("failed", {}, error=error_line(err), **fields)


def run_stage(name: str, cfg: Config, out_dir: str | Path, record_extra: dict | None,
              body: Callable[[Stage], dict], pretrain_dir: str | Path | None = None,
              allow_partial: bool = False) -> dict:
    """Run `body(stage) -> result record` through every stage's life in its folder (mst.run.lifecycle:
    locked, not re-run when done, claimed, a `failed` record on error). `PretrainUnfinished` (`pretrain_dir`
    did not finish, see pretrain_status) is raised before anything is written."""
    return run_in_folder(name, cfg, out_dir, lambda out, fields: Stage(name, cfg, out, record_extra, fields), body,
                         record_extra=record_extra, prepare=lambda: source_fields(pretrain_dir, allow_partial))


def forward_context(stage: Stage):
    """No gradients, plus autocast where the stage's precision asks for it (never on the CPU)."""
    from ..run.runtime import autocast_context

    return autocast_context(stage.precision, stage.device)


def load_frozen(pretrain_dir: str | Path | WeightsFile, which: str, device: torch.device):
    """(frozen backbone on `device`, checkpoint's Config, weights_sha256 of the checkpoint read).

    A WeightsFile gives its backbone, no Config (the stage's own applies) and the file's sha256; `which` is
    then moot (a file holds one backbone)."""
    from ..checkpoint import load_pretrained

    if isinstance(pretrain_dir, WeightsFile):
        backbone, read = pretrain_dir.load()
        return backbone.to(device), None, read.sha256

    backbone, ckpt_cfg, digest = load_pretrained(pretrain_dir, which=which)
    return backbone.to(device), ckpt_cfg, digest


def interrupt(stage: Stage, state: dict, step: int) -> None:
    """Save `state` and raise Interrupted (should_stop() asked for it at a step boundary)."""
    stage.save(state)
    raise Interrupted(step)
