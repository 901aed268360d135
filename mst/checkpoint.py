"""Checkpoints (written atomically), the weights digest, and loading a pre-trained backbone."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_write_bytes


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    # our own files: they hold RNG states and plain Python objects, not only tensors
    return torch.load(path, map_location=map_location, weights_only=False)


def weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """Digest of a state dict: names, dtypes, shapes and exact bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def load_pretrained(pretrain_dir: str | Path, which: str = "teacher"):
    """(backbone in eval mode, Config, weights_sha256) from a pre-training stage folder."""
    from .config import config_from_dict
    from .models import build_backbone

    path = Path(pretrain_dir) / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; point --checkpoint at a pre-training folder "
                                "that holds checkpoint.pt")
    state = load_checkpoint(path)
    cfg = config_from_dict(state["config"])
    backbone = build_backbone(cfg.model, cfg.augment.global_size, drop_path=0.0)
    prefix = "backbone."
    weights = {k[len(prefix):]: v for k, v in state[which].items() if k.startswith(prefix)}
    backbone.load_state_dict(weights)
    backbone.eval().requires_grad_(False)
    return backbone, cfg, state.get("weights_sha256") or weights_sha256(
        {k: v for k, v in state["teacher"].items() if k.startswith(prefix)})
