"""The scale a sweep's runs ran at, in words, and whether the paper's numbers are comparable with them.

The appendix's numbers are DeiT-S top-1 accuracies on ImageNet at the paper preset's budget. A run at another
preset or data set (the smoke budget: Fashion-MNIST and a small ViT) measures something else, so its table
prints the paper's values for reference only, with no Δ, and its title names the run's own scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

DATASETS = {"fashion_mnist": "Fashion-MNIST", "folder": "an ImageNet-style image folder"}
"""data.name in words."""


@dataclass(frozen=True)
class Scale:
    """What the runs of a sweep measure, against the paper's setting."""

    comparable: bool
    """True when the runs use the paper preset's data and architecture with no budget: Δ against the paper
    is meaningful."""
    budget: str
    """The budget's name ('paper' for the sweep file as written)."""
    words: str
    """The runs' setting in words for titles and axes, e.g. 'Fashion-MNIST 32 px, vit_smoke, 2 epochs on
    2,000 images, budget smoke'."""


@lru_cache(maxsize=1)
def _paper_setting() -> tuple[str, str, str]:
    from jobs.config_io import load_config

    cfg = load_config("paper")
    return cfg.data.name, cfg.data.root, cfg.model.arch


def _count(n: int) -> str:
    return f"{n:,}"


def _epochs(values: list[int]) -> str:
    values = sorted(set(values))
    return (" and ".join(str(v) for v in values) if len(values) > 1 else str(values[0])) + \
        (" epoch" if values == [1] else " epochs")


def _resized(m: Any) -> bool:
    """The config sets the backbone's width, depth or heads instead of its arch's own."""
    return bool(m.embed_dim or m.depth or m.num_heads)


def _model(m: Any) -> str:
    """The backbone in words: its arch, and its width, depth and patch where the config resizes it."""
    if not _resized(m):
        return m.arch
    width, depth, _ = m.size
    return f"{m.arch} at width {width}, depth {depth}, patch {m.patch_size}"


def sweep_scale(sweep: Any, configs: list[Any], paper_scale: str) -> Scale:
    """The scale of `sweep` (a jobs.sweep.Sweep) from its runs' configs; `paper_scale` is the table's words
    for the paper's setting (TableSpec.paper_scale), used when the runs are at that setting."""
    budget = sweep.budget or "paper"
    first = configs[0]
    setting = (first.data.name, first.data.root, first.model.arch)
    comparable = sweep.budget is None and sweep.preset == "paper" and all(
        (c.data.name, c.data.root, c.model.arch) == setting and not _resized(c.model)
        for c in configs) and setting == _paper_setting()
    if comparable and paper_scale:
        return Scale(True, budget, paper_scale)
    data = DATASETS.get(first.data.name, first.data.name)
    size = f" {first.augment.global_size} px" if first.data.name == "fashion_mnist" else ""
    subset = f" on {_count(first.data.train_subset)} images" if first.data.train_subset else ""
    words = (f"{data}{size}, {_model(first.model)}, {_epochs([c.train.epochs for c in configs])}{subset}, "
             f"budget {budget}")
    return Scale(comparable, budget, words)
