"""The stages a run goes through: the one list every layer reads (sweeps, profiles, launcher, job, CLI, report).

Standard library only, and no import of any stage's code: `mst.stages` is safe to import from `analysis/`
(no torch) and from the launcher (nothing heavy at submit time). A stage's code is named by a
"module:function" string and imported only when the stage runs (`StageSpec.resolve`).

Every entry point takes `(cfg, [pretrain_dir,] out_dir, **kwargs)` with `should_stop`, `record_extra` and
`show_progress` keywords; `pretrain_dir` is passed exactly when `needs_pretrain` is true.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Shape = Literal["pretrain", "eval"]


@dataclass(frozen=True)
class StageSpec:
    """One stage: what it needs, where it runs, what it calls and what its result.json reports."""

    name: str
    """Folder name under the run and the word sweeps, manifests and records use (path-safe)."""
    needs_pretrain: bool
    """Reads the run's pre-trained weights: its entry point gets the pretrain folder, a sweep running it must
    run `pretrain`, and on Slurm it waits (task for task) for the pre-training array."""
    shape: Shape
    """Resource shape on a cluster profile: `pretrain` takes the profile's `resources`, `eval` its
    `downstream` block."""
    entry: str
    """'module:function' called to run the stage, resolved on first use."""
    metrics: tuple[str, ...]
    """Metric names of its result.json (`{k}` stands for each k of eval.knn_ks)."""
    kwargs: tuple[tuple[str, Any], ...] = ()
    """Fixed keyword arguments of the entry point (e.g. the probe of a linear stage)."""
    command: str | None = None
    """The `mst-eval` sub-command that runs it by hand (stages that share one take their `kwargs` as options);
    None for `pretrain`, which `mst-pretrain` runs."""
    description: str = ""
    """One line for help texts and reports."""
    frozen_probe: bool = False
    """Measures the frozen pre-trained backbone's features (k-NN or linear probe): its `done` record carries
    the random-init and raw-pixel baselines under eval.baselines (mst/eval/baselines.py), and the card of an
    exported backbone quotes its result (mst/export.py)."""

    def metric_names(self, knn_ks: tuple[int, ...] | list[int] = ()) -> tuple[str, ...]:
        """`metrics` with `{k}` spelled out for each k of eval.knn_ks."""
        return tuple(m.format(k=k) for m in self.metrics for k in (knn_ks if "{k}" in m else (None,)))

    def resolve(self) -> Callable[..., dict]:
        """The entry point's function (imports its module now)."""
        module, _, function = self.entry.partition(":")
        return getattr(importlib.import_module(module), function)

    def call(self, cfg: Any, out_dir: Any, pretrain_dir: Any = None, **kwargs: Any) -> dict:
        """Run the stage: its entry point with the fixed kwargs, the pretrain folder when it needs one."""
        fn = self.resolve()
        head = (cfg, pretrain_dir, out_dir) if self.needs_pretrain else (cfg, out_dir)
        return fn(*head, **dict(self.kwargs), **kwargs)


_PROBE_METRICS = ("top1_best", "top5_best", "top1_last", "top5_last", "best_epoch")

STAGES: dict[str, StageSpec] = {s.name: s for s in (
    StageSpec("pretrain", False, "pretrain", "mst.train:run_pretrain",
              ("loss", "loss_dino", "loss_rec", "steps", "epochs"),
              description="self-supervised pre-training (MST)"),
    StageSpec("knn", True, "eval", "mst.eval.knn_stage:run_knn", ("top1@{k}", "top5@{k}"), command="knn",
              frozen_probe=True,
              description="weighted k-NN of the frozen backbone's class token, every k of eval.knn_ks in one pass"),
    StageSpec("linear_cls", True, "eval", "mst.eval.linear:run_linear", _PROBE_METRICS, (("probe", "cls"),),
              command="linear", frozen_probe=True, description="linear probe on the last class token"),
    StageSpec("linear_dino", True, "eval", "mst.eval.linear:run_linear", _PROBE_METRICS, (("probe", "dino"),),
              command="linear", frozen_probe=True, description="DINO's linear probe on the last 4 class tokens"),
    StageSpec("supervised", False, "eval", "mst.eval.supervised:run_supervised", _PROBE_METRICS, command="supervised",
              description="train the same backbone with labels (the supervised baseline)"),
    StageSpec("attention", True, "eval", "mst.eval.attention:run_attention", ("images", "heads", "frames"),
              command="attention", description="PNG grid of class-token attention maps (input | MST mean | heads | supervised)"),
)}
"""Every stage, in run order (pretrain first)."""

NAMES: tuple[str, ...] = tuple(STAGES)
"""Stage names in run order."""

NEEDS_PRETRAIN: tuple[str, ...] = tuple(n for n, s in STAGES.items() if s.needs_pretrain)
"""Stages that read the pre-trained weights."""


def get_stage(name: str) -> StageSpec:
    """The stage called `name`; ValueError naming the valid ones otherwise."""
    try:
        return STAGES[name]
    except KeyError:
        raise ValueError(f"unknown stage '{name}'; choose from {', '.join(NAMES)}") from None


def stages_with_shape(shape: Shape) -> tuple[str, ...]:
    """Names of the stages that run with the profile's `shape` resources."""
    return tuple(n for n, s in STAGES.items() if s.shape == shape)


def eval_commands() -> dict[str, tuple[StageSpec, ...]]:
    """`mst-eval` sub-command -> the stages it runs (in run order)."""
    out: dict[str, tuple[StageSpec, ...]] = {}
    for spec in STAGES.values():
        if spec.command:
            out[spec.command] = out.get(spec.command, ()) + (spec,)
    return out
