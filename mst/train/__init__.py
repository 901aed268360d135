"""Pre-training: the loop (pretrain.py), networks (nets.py), data (loader.py), state (rng.py)."""

from .pretrain import PretrainTrainer, run_pretrain
from .runtime import Interrupted, NonFiniteLoss, RunFolderMismatch

__all__ = ["Interrupted", "NonFiniteLoss", "PretrainTrainer", "RunFolderMismatch", "run_pretrain"]
