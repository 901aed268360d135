"""Checkpoints (written atomically), the weights digest, and loading a pre-trained backbone.

A checkpoint holds only tensors and plain values (dicts, lists, tuples, str, numbers, None): it is read with
compat.load_weights_only (torch.load with weights_only=True), so a planted file cannot run code when a run
resumes or is evaluated.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_write_bytes
from .compat import load_weights_only


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


class CheckpointError(ValueError):
    """A checkpoint file that this toolkit did not write, or that is damaged (one line)."""


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    expect: Iterable[str] = ()) -> dict:
    """The dict saved at `path`, holding at least the keys `expect`; CheckpointError for anything else.

    weights_only=True: only tensors and plain values are unpickled, never arbitrary objects (a pickle
    payload is refused, not run)."""
    path = Path(path)
    try:
        state = load_weights_only(path, map_location=map_location)
    except pickle.UnpicklingError:
        # not tensors and plain values: another program's file, junk, or a payload; nothing in it was run
        raise CheckpointError(f"{path} is not a checkpoint this toolkit wrote (it holds more than tensors and "
                              "plain values, or is not a torch file); refused without loading it: delete it "
                              "or point at another folder") from None
    except OSError as err:
        if err.filename is not None:  # the file system's own error (missing, unreadable): say it as it is
            raise
        raise CheckpointError(f"{path} is a damaged checkpoint ({err.strerror or err}; truncated?); delete it "
                              "to start the stage afresh or point at another folder") from None
    except Exception as err:  # noqa: BLE001 - torch reports damaged and foreign files as many types
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:100]
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated, or not a torch file: "
                              f"{type(err).__name__} {reason}); delete it to start the stage afresh or point "
                              "at another folder") from None
    missing = [k for k in expect if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"{path} is not a checkpoint of this kind (no {', '.join(missing)}); it was "
                              "written by another program or stage: point at the right folder")
    return state


def refuse_foreign(path: str | Path, chash: str, config: dict | None = None, stage: str | None = None) -> None:
    """CheckpointError (one line naming the mismatch) when the checkpoint at `path` was written for another
    config (its `config`, or the `config_hash` an evaluation stage's checkpoint carries) or another stage;
    nothing when there is no file or it matches. Called before a stage writes anything: a checkpoint copied
    in from another run is refused, never resumed, and left as it is."""
    path = Path(path)
    if not path.is_file():
        return
    state = load_checkpoint(path)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a checkpoint of this toolkit (a {type(state).__name__}); move it "
                              "away or use a new --out folder")
    if stage is not None and state.get("stage", stage) != stage:
        raise CheckpointError(f"{path} is a checkpoint of the '{state['stage']}' stage, not '{stage}'; move it "
                              "away or use a new --out folder (it was left as it is)")
    mismatch = _config_mismatch(state, chash, config)
    if mismatch:
        raise CheckpointError(f"{path} was written by another run: {mismatch}; move it away or use a new --out "
                              "folder (it was left as it is)")


def _config_mismatch(state: dict, chash: str, config: dict | None) -> str | None:
    """What differs between the checkpoint's config and this run's (hash `chash`, plain `config`), or None."""
    from .config import ConfigError, config_from_dict, config_hash

    if "config" not in state:
        theirs = state.get("config_hash")
        return None if theirs in (None, chash) else f"its config hash is {theirs}, this run's is {chash}"
    try:
        theirs_hash = config_hash(config_from_dict(state["config"]))
    except (ConfigError, TypeError, AttributeError):
        return "its config is not one this toolkit reads"
    if theirs_hash == chash:
        return None
    differs = _differing_keys(state["config"], config or {})
    arch = [k for k in differs if k == "model.arch"]
    head = (f"architecture {_at(state['config'], arch[0])!r}, this run's {_at(config, arch[0])!r}; " if arch
            else "")
    shown = ", ".join(f"{k} {_at(state['config'], k)!r} vs {_at(config, k)!r}" for k in differs[:3])
    return f"{head}config hash {theirs_hash}, this run's {chash}" + (f" ({shown})" if shown else "")


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix[:-1]: data}
    return {k: v for key, value in data.items() for k, v in _flat(value, f"{prefix}{key}.").items()}


def _differing_keys(theirs: dict, ours: dict) -> list[str]:
    a, b = _flat(theirs), _flat(ours)
    keys = sorted(set(a) | set(b), key=lambda k: (k != "model.arch", k))
    return [k for k in keys if a.get(k) != b.get(k)]


def _at(config: dict | None, dotted: str) -> Any:
    for part in dotted.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config


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
    state = load_checkpoint(path, expect=("config", "teacher", "student"))
    cfg = config_from_dict(state["config"])
    backbone = build_backbone(cfg.model, cfg.augment.global_size, drop_path=0.0)
    prefix = "backbone."
    weights = {k[len(prefix):]: v for k, v in state[which].items() if k.startswith(prefix)}
    try:
        backbone.load_state_dict(weights)
    except RuntimeError:
        raise CheckpointError(f"{path}: its {which} weights do not fit the {cfg.model.arch} backbone its config "
                              "names; the file is damaged or was not written by mst-pretrain") from None
    backbone.eval().requires_grad_(False)
    return backbone, cfg, state.get("weights_sha256") or weights_sha256(
        {k: v for k, v in state["teacher"].items() if k.startswith(prefix)})
