"""Two baselines beside an evaluation stage's own numbers: the same architecture at random initialisation, and
raw pixels, each evaluated with the stage's own recipe on the stage's own images.

- "random init": the backbone exactly as pre-training starts it (torch seeded with the run's `train.seed`, the
  backbone built first, as the trainer does), evaluated the way the stage evaluates pre-trained weights.
- "raw pixels": the normalised evaluation image, flattened (3 x S x S values), fed through the same code as a
  frozen "backbone" whose class token is the pixels: the same weighted k-NN at the same k values, the same
  linear probe (lr, epochs, batches, augmentation or cached features) on pixel features.

Stages: knn, linear_cls and linear_dino (attention and supervised have no such baseline). The metrics carry the
stage's own names. Values depend only on the stage, the backbone's shape, the images, the stage's evaluation
settings and the seed, never on the pre-training's method settings; so they are computed once per key and
cached as JSON in `<runs root>/.baselines/<key>/baselines.json`, shared by every cell of a sweep (repeat r of
every cell has the same seed) and by every sweep under the root with the same budget. The entry
(mst/eval/baselines_cache.py, typed) is written atomically under the key folder's lock, read back decoded and
validated, never unpickled; an unusable entry is recomputed with one warning line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from ..models import build_backbone
from ..run.folder import locked_stage_folder
from ..run.record import versions
from .baselines_cache import (
    CACHE_FOLDER,
    CACHE_NAME,
    LABELS,
    SCHEMA_VERSION,
    STAGES,
    BaselinesEntry,
    expected_metrics,
    read_entry,
    write_entry,
)
from .epochs import summarise
from .knn_probe import knn_eval
from .linear_probe import train_probe
from .stage import Stage

log = logging.getLogger(__name__)

LOCK_WAIT_S = 24 * 3600.0     # a stage waits while another computes the same entry (its job limit ends it)
KNN_FIELDS = ("knn_ks", "knn_temperature", "feature_batch_size")
LINEAR_FIELDS = ("linear_recipe", "linear_lr", "linear_batch_size", "linear_epochs", "linear_momentum",
                 "linear_weight_decay", "feature_batch_size")


class PixelFeatures(nn.Module):
    """Raw pixels as a frozen backbone: its class token is the flattened normalised image, so `embed`,
    `feature_dim` and `extract_features` read pixels exactly as they read a network (cls and dino alike)."""

    depth = 1  # the dino features concatenate min(4, depth) class tokens: here just the pixels

    def __init__(self, crop: int, channels: int = 3):
        super().__init__()
        self.embed_dim = channels * crop * crop

    def forward(self, images: torch.Tensor, n_last: int | None = None) -> SimpleNamespace:
        flat = images.flatten(1).float()                           # [B, 3, S, S] -> [B, 3 S S]
        return SimpleNamespace(cls=flat, last_cls=flat.unsqueeze(1))  # last_cls [B, 1, 3 S S]


def initial_backbone(cfg) -> nn.Module:
    """The backbone the run's pre-training started from: torch seeded with cfg.train.seed and the backbone built
    first, as the trainer does (the teacher starts as a copy); drop path off, frozen, in eval mode. The global
    random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        start = build_backbone(cfg.model, cfg.augment.global_size)
        backbone = build_backbone(cfg.model, cfg.augment.global_size, drop_path=0.0)  # its draws are overwritten
    backbone.load_state_dict(start.state_dict())
    return backbone.eval().requires_grad_(False)


# ------------------------------------------------------------------------------------------------ the cache key
def key_inputs(stage: str, cfg, mode: str, device: str, precision: str) -> dict[str, Any]:
    """Everything the baseline values depend on: the stage, the backbone's shape, the images (which ones and
    their transform), the stage's evaluation settings, the seed, where and how the features are computed."""
    a, d, e = cfg.augment, cfg.data, cfg.eval
    installed = versions()  # initialisation and feature numerics follow torch and timm
    fields = KNN_FIELDS if stage == "knn" else LINEAR_FIELDS
    transform = {"eval_resize": a.eval_resize, "eval_crop": a.eval_crop, "mean": list(a.mean), "std": list(a.std)}
    if mode == "augmented":
        transform["flip_prob"] = a.flip_prob  # the probe's training crops
    m = cfg.model
    # fields added after caches were written enter only when set, so that those caches keep their keys
    resized = {k: getattr(m, k) for k in ("embed_dim", "depth", "num_heads") if getattr(m, k)}
    extra_eval = {"linear_norm": e.linear_norm} if stage != "knn" and e.linear_norm != "none" else {}
    return {
        "stage": stage, "mode": mode,
        "model": {"arch": m.arch, "patch_size": m.patch_size, "img_size": a.global_size, **resized},
        "data": {"name": d.name, "root": d.root, "train_subset": d.train_subset, "test_subset": d.test_subset},
        "transform": transform,
        "eval": {**{k: list(v) if isinstance(v, tuple) else v for k in fields for v in [getattr(e, k)]},
                 **extra_eval},
        "seed": cfg.train.seed, "device": device, "precision": precision, "versions": {pkg: installed.get(pkg) for pkg in ("torch", "timm")},
    }


def cache_key(inputs: dict[str, Any]) -> str:
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cache_root(out_dir: str | Path, record_extra: dict | None) -> Path:
    """The runs root of a sweep's stage folder `<runs>/<sweep>/<run_id>/<stage>` (its record names the sweep and
    the run); for a stage folder of its own (mst-eval --out DIR), the folder that holds it."""
    out, extra = Path(out_dir), record_extra or {}
    if extra.get("run_id") == out.parent.name and extra.get("sweep") == out.parent.parent.name:
        return out.parents[2]
    return out.parent


class BaselinesCacheError(ValueError):
    """A baselines cache that leads out of its runs root (one line)."""


def cache_folder(root: Path, key: str) -> Path:
    folder = root / CACHE_FOLDER / key
    resolved, top = folder.resolve(), root.resolve()
    if top not in resolved.parents:
        raise BaselinesCacheError(f"baselines cache {folder} resolves to {resolved}, outside {top}; remove the "
                                  "link that leads there")
    return folder


# ------------------------------------------------------------------------------------------------ evaluation
def probe_metrics(stage: Stage, backbone: nn.Module, probe: str, cached: bool, tag: str) -> dict[str, float]:
    """The linear stage's own training (mst/eval/linear_probe.py `train_probe`: same layer, lr schedule,
    batches and augmentations, from the same seed) on `backbone`, in one go: baselines are not checkpointed,
    and write no metrics.jsonl line and no checkpoint into the stage they are computed in."""
    non_finite = (f"'{tag}' baseline probe loss", "lower eval.linear_lr, or set eval.baselines=false")
    trained = train_probe(stage, backbone, probe, cached, features_prefix=f"{tag}_", non_finite=non_finite)
    return summarise(trained.history)


def compute(stage: Stage, mode: str) -> dict[str, dict[str, float]]:
    """{"random init": metrics, "raw pixels": metrics} of `stage`, evaluated as the stage evaluates."""
    cfg = stage.cfg
    backbones = dict(zip(LABELS, (initial_backbone(cfg), PixelFeatures(cfg.augment.eval_crop)), strict=True))
    found = {}
    for label, backbone in backbones.items():
        backbone = backbone.to(stage.device)
        tag = "baseline-" + label.replace(" ", "-")  # feature files in the stage's features/ (dropped with it)
        if stage.name == "knn":
            found[label] = knn_eval(stage, backbone, f"{tag}_")[0]  # the knn stage's own evaluation
        else:
            probe = stage.name.split("_", 1)[1]
            found[label] = probe_metrics(stage, backbone, probe, mode == "cached_features", tag)
    return found


def baseline_fields(stage: Stage, metrics: dict[str, Any], mode: str | None = None) -> dict[str, Any]:
    """The record fields that eval.baselines adds to `stage`'s `done` record: {"baselines": ...}, or none.

    `metrics` are the stage's own, checked finite first: a record that fails on them costs no baseline."""
    stage.check_finite(metrics)
    found = stage_baselines(stage, mode)
    return {} if found is None else {"baselines": found}


def stage_baselines(stage: Stage, mode: str | None = None) -> dict[str, dict[str, float]] | None:
    """The `baselines` field of `stage`'s record, or None when eval.baselines is off or the stage has none.

    `mode` is the linear probe's mode as its record states it (cached_features or augmented; default from
    eval.linear_cached_features). Computed once per key under the runs root, then read from the cache.
    """
    if not stage.cfg.eval.baselines or stage.name not in STAGES:
        return None
    return cached_baselines(stage, mode, cache_root(stage.out, stage.record_extra))


def baselines_for(stage_name: str, cfg, root: str | Path) -> dict[str, dict[str, float]]:
    """The baselines of stage `stage_name` under `cfg` outside any run (tools, benchmarks): read from the cache
    under `root`, or computed in a scratch stage folder and cached there (whatever eval.baselines says)."""
    if stage_name not in STAGES:
        raise ValueError(f"stage '{stage_name}' has no baselines; choose one of {', '.join(STAGES)}")
    with tempfile.TemporaryDirectory(prefix="mst-baselines-") as scratch:
        return cached_baselines(Stage(stage_name, cfg, Path(scratch) / stage_name), None, Path(root))


def cached_baselines(stage: Stage, mode: str | None, root: Path) -> dict[str, dict[str, float]]:
    """`stage`'s baselines from the cache under `root`, computed and cached under the key's lock when missing."""
    cfg = stage.cfg
    if stage.name == "knn":
        mode = "features"
    elif mode is None:
        mode = "cached_features" if cfg.eval.linear_cached_features else "augmented"
    inputs = key_inputs(stage.name, cfg, mode, stage.device.type, stage.precision)
    key = cache_key(inputs)
    folder = cache_folder(root, key)
    path, names = folder / CACHE_NAME, expected_metrics(stage.name, cfg.eval.knn_ks)
    found, _ = read_entry(path, key, names)
    if found is not None:
        return found
    with locked_stage_folder(folder, wait_s=LOCK_WAIT_S):
        found, problem = read_entry(path, key, names)  # another stage may have written it while this one waited
        if found is not None:
            return found
        if problem:
            log.warning("baselines cache %s is unusable (%s); recomputing it", path, problem)
        t0 = time.time()
        found = compute(stage, mode)
        write_entry(path, BaselinesEntry(version=SCHEMA_VERSION, key=key, inputs=inputs, baselines=found,
                                         wall_time_s=round(time.time() - t0, 3),
                                         computed_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))
    return found
