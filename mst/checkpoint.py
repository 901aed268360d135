"""Atomic writes (temp file, fsync, rename), checkpoints, and the weights digest."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())   # mkstemp makes files owner-only; results are meant to be shared
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode())


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


def read_json(path: str | Path) -> dict | None:
    """The JSON object at `path`, or None when the file is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


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
