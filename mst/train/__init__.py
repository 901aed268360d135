"""Pre-training: the loop (pretrain.py), networks (nets.py), data (loader.py). What every stage shares (device,
precision, the exceptions below, progress, folder, records, RNG state) is in mst/run.
"""

from ..run.folder import RunFolderMismatch
from ..run.runtime import Interrupted, NonFiniteLoss
from .pretrain import PretrainTrainer, run_pretrain

__all__ = ["Interrupted", "NonFiniteLoss", "PretrainTrainer", "RunFolderMismatch", "run_pretrain"]
