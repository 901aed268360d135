"""Export a pre-training's backbone for other programs: the weights alone (no optimizer, heads, RNG or pickled
objects) in timm's or DINO's names, as safetensors or a plain tensor state dict, with a JSON card beside it.

The [MASK] token is left out (no other ViT reads one). The last block's class-token attention that MST masks
with has no parameters of its own: it is computed from the exported `attn.qkv` weights, so nothing else is
dropped. The card names what was left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .atomic import atomic_write_bytes, atomic_write_json, read_json
from .run.record import is_done
from .stages import STAGES
from .weights import NAMINGS, WeightsError, backbone_state, container_of, encode, sha256_bytes, to_naming

CARD_SUFFIX = ".card.json"
"""The card of FILE is FILE + this suffix (backbone.safetensors -> backbone.safetensors.card.json)."""

RESULT_STAGES = tuple(name for name, spec in STAGES.items() if spec.frozen_probe)
"""Stages beside the pre-training whose done results the card quotes (when they read these weights)."""


def card_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + CARD_SUFFIX)


def timm_recipe(vit: Any) -> tuple[str, dict[str, int]]:
    """(timm model name, keyword arguments) that rebuild the backbone's timm ViT with a matching state dict."""
    name = vit.pretrained_cfg.get("architecture") if getattr(vit, "pretrained_cfg", None) else None
    kwargs = {"img_size": int(vit.patch_embed.img_size[0]), "patch_size": int(vit.patch_embed.patch_size[0]),
              "embed_dim": int(vit.embed_dim), "depth": len(vit.blocks),
              "num_heads": int(vit.blocks[0].attn.num_heads), "num_classes": 0}
    return name, kwargs


def stage_results(pretrain_dir: Path, digest: str) -> dict[str, dict]:
    """Metrics of the finished evaluation stages beside the pre-training that read these same weights."""
    found = {}
    for stage in RESULT_STAGES:
        record = is_done(pretrain_dir.parent / stage)
        if record is not None and record.get("weights_sha256") == digest:
            found[stage] = {"metrics": record.get("metrics"), "features_from": record.get("features_from")}
    return found


def export_backbone(pretrain_dir: str | Path, naming: str, out: str | Path, which: str = "teacher",
                    allow_partial: bool = False) -> dict[str, Any]:
    """Write the `which` backbone of the pre-training in `pretrain_dir` to `out` in `naming`, then its card;
    return the card. The container follows out's suffix (.safetensors, or .pth/.pt/.bin for torch).

    Raises WeightsError (a bad naming or suffix), CheckpointError (a foreign or damaged checkpoint) and
    PretrainUnfinished (unless `allow_partial`) before anything is written. Both writes are atomic."""
    from .checkpoint import load_pretrained
    from .config import config_hash
    from .eval.stage import pretrain_status
    from .run.record import git_sha

    out, pretrain_dir = Path(out), Path(pretrain_dir)
    container = container_of(out)
    if naming not in NAMINGS:
        raise WeightsError(f"unknown format '{naming}'; choose {' or '.join(NAMINGS)}")
    if which not in ("teacher", "student"):
        raise WeightsError(f"unknown backbone '{which}'; choose teacher or student")
    partial = pretrain_status(pretrain_dir, allow_partial)
    backbone, cfg, digest = load_pretrained(pretrain_dir, which=which)
    state = to_naming(backbone_state(backbone), naming)
    model_name, model_kwargs = timm_recipe(backbone.vit)
    metadata = {"format": "pt", "naming": naming, "arch": cfg.model.arch, "which": which}
    data = encode(state, container, metadata)
    record = read_json(pretrain_dir / "result.json") or {}
    card = {
        "file": out.name, "file_sha256": sha256_bytes(data), "naming": naming, "container": container,
        "which": which, "arch": cfg.model.arch, "timm_model": model_name, "timm_kwargs": model_kwargs,
        "patch_size": model_kwargs["patch_size"], "image_size": model_kwargs["img_size"],
        "embed_dim": model_kwargs["embed_dim"], "depth": model_kwargs["depth"],
        "num_heads": model_kwargs["num_heads"],
        "normalisation": {"mean": list(cfg.augment.mean), "std": list(cfg.augment.std)},
        "left_out": ["mask_token"],
        "config_hash": record.get("config_hash") or config_hash(cfg), "run_id": record.get("run_id"),
        "pretrain_dir": str(pretrain_dir.resolve()), "pretrain_status": record.get("status"),
        "pretrain_metrics": record.get("metrics"), "weights_sha256": digest,
        "results": stage_results(pretrain_dir, digest),
        "git_sha": record.get("git_sha") or git_sha(), "exported_with_git_sha": git_sha(), **partial,
    }
    atomic_write_bytes(out, data)
    atomic_write_json(card_path(out), card)
    return card
