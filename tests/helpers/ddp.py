"""Two gloo ranks on the CPU under torchrun, each running tests/helpers/ddp_pretrain.py (the DDP tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def pretrain_on_two_ranks(out: Path, sets: list[str]) -> dict:
    """Pre-train the tiny preset with `sets` into `out` on 2 processes; the run's result record."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(ROOT / "tests/helpers/ddp_pretrain.py"), str(out), *sets],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((Path(out) / "result.json").read_text())
