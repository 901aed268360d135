"""Seeds: derived from names with hashlib (stable across processes and machines), never from Python's hash().

Repeat r of every sweep cell gets the same seed, so the cells of a sweep are paired (same initialisation,
same data order, same augmentations) as in the paper's appendix; `cell_key` decorrelates them on request.
"""

from __future__ import annotations

import hashlib
import random

# numpy and torch are imported inside the functions that seed them: `derive_seed` is used by sweep
# expansion in `mst-report`, which must never import torch.

_SEED_BITS = 31  # seeds fit a signed 32-bit int: every library (numpy's legacy seeding, CUDA) accepts them


def _hash_to_int(text: str, bits: int) -> int:
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> (64 - bits)


def derive_seed(base_seed: int, repeat: int, stage: str, cell_key: str | None = None) -> int:
    """The seed of one stage of one repeat, in [0, 2**31).

    Without `cell_key` the seed depends only on (base_seed, repeat, stage): every cell of a sweep shares it.
    With `cell_key` (e.g. the cell's config hash) each cell gets its own seed.
    """
    text = f"mst-seed|{int(base_seed)}|{int(repeat)}|{stage}"
    if cell_key is not None:
        text += f"|{cell_key}"
    return _hash_to_int(text, _SEED_BITS)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one sample's augmentation: a function of (seed, epoch, index) only, in [0, 2**63)."""
    return _hash_to_int(f"mst-sample|{int(seed)}|{int(epoch)}|{int(index)}", 63)


def seed_everything(seed: int) -> None:
    """Seed Python's `random`, numpy's global generator and torch (CPU and every accelerator)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def worker_init_fn(worker_id: int) -> None:
    """DataLoader worker initialiser: seed `random` and numpy from the worker's torch seed.

    The DataLoader gives each worker the torch seed base_seed + worker_id (base_seed drawn from the loader's
    generator); deriving the other libraries from it keeps any numpy/random use in a worker reproducible.
    The augmentations themselves do not depend on this: `AugmentedDataset` reseeds per sample.
    """
    import numpy as np
    import torch

    seed = torch.initial_seed()
    random.seed(seed)
    np.random.seed(seed % 2**32)
