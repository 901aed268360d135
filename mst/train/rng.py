"""Every random stream a step draws from, saved and restored so that a resumed run is bitwise identical."""

from __future__ import annotations

import random

import numpy as np
import torch


def get_rng_state(mask_gen: torch.Generator) -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
             "mask": mask_gen.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, mask_gen: torch.Generator, rank: int = 0) -> None:
    # the checkpoint holds rank 0's streams; other ranks re-derive theirs deterministically from it
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    mask_gen.set_state(state["mask"].cpu() if mask_gen.device.type == "cpu" else state["mask"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    if rank:
        seed = int(torch.randint(0, 2**62, (1,)).item())
        torch.manual_seed(seed + rank)
        mask_gen.manual_seed(seed + 1000 + rank)
