"""What the hostile-input tests share: running a command line as a user does, its one error line, file digests
and a runs root of synthetic records."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from conftest import _one_error_line as one_line  # noqa: F401  (re-exported for the hostile-input tests)

REPO = Path(__file__).resolve().parents[2]


def command(module: str, *args: str, cwd: Path = REPO, env: dict | None = None, timeout: float = 60
            ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False, env={**os.environ, **(env or {})})




def digest(folder: Path) -> dict[str, str]:
    """Every regular file under `folder` but the report's own cache, and its sha256 (what must not change)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink() and "report-cache" not in p.name}



def synthetic_runs(root: Path) -> Path:
    """`root` holding a done record for every stage of every run of loss_weight_smoke."""
    from analysis.synthetic import write_sweep_records
    from jobs.sweep import load_sweep

    write_sweep_records(root, load_sweep("loss_weight_smoke").expand())
    return root


def knn_records(runs: Path) -> list[Path]:
    return sorted(runs.glob("loss_weight_smoke/*/knn/result.json"))


def report(runs: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return command("analysis.cli", *args, "--runs", str(runs), "--sweep", "loss_weight_smoke", timeout=timeout)
