"""Run by torchrun in the DDP test: one pre-training run of the tiny preset with the given overrides."""

import sys

import torch
import torch.distributed

from jobs.config_io import load_config
from mst.train import run_pretrain

if __name__ == "__main__":
    torch.set_num_threads(1)
    out, *sets = sys.argv[1:]
    run_pretrain(load_config("tiny", sets), out, show_progress=False)
    if torch.distributed.is_initialized():  # run_pretrain set the group up, so it must have ended it
        sys.exit("run_pretrain left the process group it initialised behind")
