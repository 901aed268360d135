"""Every random stream a step draws from, saved and restored so that a resumed run is bitwise identical.

The saved state holds tensors and plain values only (checkpoints load with weights_only=True): numpy's
MT19937 key goes in as an int64 tensor, Python's state as the tuple of ints `random.getstate()` gives.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def _numpy_state() -> dict:
    name, key, pos, has_gauss, cached = np.random.get_state()
    return {"name": str(name), "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _set_numpy_state(state: dict) -> None:
    key = state["key"].cpu().numpy().astype(np.uint32)
    np.random.set_state((state["name"], key, state["pos"], state["has_gauss"], state["cached_gaussian"]))


def get_rng_state(mask_gen: torch.Generator | None = None) -> dict:
    """Python's, numpy's and torch's streams (CUDA's too where present), and `mask_gen`'s when given."""
    state = {"python": random.getstate(), "numpy": _numpy_state(), "torch": torch.get_rng_state()}
    if mask_gen is not None:
        state["mask"] = mask_gen.get_state()
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, mask_gen: torch.Generator | None = None, rank: int = 0) -> None:
    """Restore the streams `state` holds; a stream it lacks (a supervised checkpoint of before, which saved
    torch's and CUDA's only) is left as it is."""
    # the checkpoint holds rank 0's streams; other ranks re-derive theirs deterministically from it
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        _set_numpy_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if mask_gen is not None:
        mask_gen.set_state(state["mask"].cpu() if mask_gen.device.type == "cpu" else state["mask"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    if rank:
        seed = int(torch.randint(0, 2**62, (1,)).item())
        torch.manual_seed(seed + rank)
        if mask_gen is not None:
            mask_gen.manual_seed(seed + 1000 + rank)
