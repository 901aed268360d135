"""Frozen-backbone features: `cls` (final-norm class token) or `dino` (the last 4 blocks' class tokens, each
through the final norm, concatenated), extracted in batches without gradients, resumable mid-way.

Extraction order is fixed (no shuffling, a deterministic eval transform), so a run stopped after n samples
continues at sample n and yields exactly the features an uninterrupted run would.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ..augment import AugmentedDataset, eval_transform
from ..checkpoint import atomic_torch_save, load_checkpoint
from ..data import build_dataset
from ..run.progress import StepProgress
from ..run.runtime import Interrupted
from .stage import Stage, StopFn, forward_context, stop_requested

FEATURE_KINDS = ("cls", "dino")
DINO_LAST_BLOCKS = 4  # DINO's linear evaluation of ViT-S concatenates the last 4 class tokens


def feature_dim(backbone: torch.nn.Module, kind: str) -> int:
    """Width of the `kind` features: embed_dim for cls, 4 x embed_dim for dino (384 / 1536 for DeiT-S)."""
    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown probe features '{kind}'; choose one of {', '.join(FEATURE_KINDS)}")
    return backbone.embed_dim * (dino_blocks(backbone) if kind == "dino" else 1)


def dino_blocks(backbone: torch.nn.Module) -> int:
    """Blocks whose class tokens the dino features concatenate: 4, or every block of a shallower test net."""
    return min(DINO_LAST_BLOCKS, backbone.depth)


def embed(backbone: torch.nn.Module, images: torch.Tensor, kind: str) -> torch.Tensor:
    """images [B, 3, H, W] -> features [B, feature_dim] (float32)."""
    if kind == "cls":
        return backbone(images).cls.float()  # [B, D]
    if kind == "dino":
        out = backbone(images, n_last=dino_blocks(backbone))
        return out.last_cls.flatten(1).float()  # [B, 4, D] -> [B, 4D]
    raise ValueError(f"unknown probe features '{kind}'; choose one of {', '.join(FEATURE_KINDS)}")


def eval_dataset(cfg, split: str) -> AugmentedDataset:
    """The split with the evaluation transform (resize + centre crop, normalised)."""
    return AugmentedDataset(build_dataset(cfg.data, split), eval_transform(cfg.augment), cfg.train.seed)


def class_count(dataset: Dataset) -> int:
    """Number of classes of the data set under any AugmentedDataset wrapper."""
    base = dataset.base if isinstance(dataset, AugmentedDataset) else dataset
    return len(base.classes)


def _loader(dataset: Dataset, batch_size: int, workers: int, device: torch.device) -> DataLoader:
    # a private generator: starting an iterator must not draw from the global torch stream
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                      pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def extract_features(stage: Stage, backbone: torch.nn.Module, dataset: Dataset, kind: str, name: str,
                     should_stop: StopFn = None, show_progress: bool = True
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(features [N, D] float32 on the CPU, labels [N]) of `dataset`, cached as <stage>/features/<name>.pt.

    `should_stop()` is polled before every batch: the samples done so far are saved to
    <name>.partial.pt and `Interrupted` is raised; the next call continues from there.
    """
    folder = stage.out / "features"
    final, partial = folder / f"{name}.pt", folder / f"{name}.partial.pt"
    if final.is_file():
        saved = load_checkpoint(final, expect=("features", "labels"))
        return saved["features"], saved["labels"]
    feats: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    if partial.is_file():
        saved = load_checkpoint(partial, expect=("features", "labels"))
        feats, labels = [saved["features"]], [saved["labels"]]
    done = sum(len(x) for x in labels)
    n = len(dataset)
    batch = stage.cfg.eval.feature_batch_size

    def save_partial() -> None:
        atomic_torch_save({"features": torch.cat(feats) if feats else torch.empty(0),
                           "labels": torch.cat(labels) if labels else torch.empty(0, dtype=torch.long)}, partial)

    backbone.eval()
    remaining = Subset(dataset, range(done, n))
    loader = _loader(remaining, batch, stage.cfg.data.num_workers, stage.device)
    total_batches = (n + batch - 1) // batch
    every = max(1, stage.cfg.train.checkpoint_every)
    with StepProgress(total_batches, done // batch, show_progress, f"{stage.name} features {name}") as bar:
        for i, (images, targets) in enumerate(loader):
            if stop_requested(should_stop):
                save_partial()
                stage.save()  # the stage's own state (if any) with its wall time brought up to date
                raise Interrupted(done)
            with forward_context(stage):
                out = embed(backbone, images.to(stage.device, non_blocking=True), kind)  # [B, D]
            feats.append(out.float().cpu())
            labels.append(torch.as_tensor(targets, dtype=torch.long))
            done += len(targets)
            bar.update((done + batch - 1) // batch, {})
            if (i + 1) % every == 0 and done < n:
                save_partial()  # bounds what a hard kill loses
    features, targets = torch.cat(feats), torch.cat(labels)
    atomic_torch_save({"features": features, "labels": targets, "kind": kind}, final)
    partial.unlink(missing_ok=True)
    return features, targets


def drop_feature_cache(stage: Stage) -> None:
    """Remove the cached features once the stage's result is written (they can be large)."""
    folder = stage.out / "features"
    if folder.is_dir():
        for path in folder.iterdir():
            path.unlink(missing_ok=True)
        folder.rmdir()
