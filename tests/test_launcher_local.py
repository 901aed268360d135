"""Cluster `local` (what `make demo` uses): the stages run in this process, one after another (~25 s)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SWEEP = """name: local_tiny
table: A10
preset: tiny
repeats: 1
base_seed: 0
stages: [pretrain, knn]
overrides: {train.epochs: 1}
grid: {}
"""


@pytest.mark.slow
def test_local_cluster_runs_stages_in_process_and_skips_done(tmp_path):
    sweep, runs = tmp_path / "local_tiny.yaml", tmp_path / "runs"
    sweep.write_text(SWEEP)
    cmd = [sys.executable, "-m", "jobs.cli.sweep", "submit", str(sweep), "--cluster", "local", "--runs", str(runs)]
    first = subprocess.run(cmd, cwd=ROOT, check=False, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    run_dirs = [p for p in (runs / "local_tiny").iterdir() if p.is_dir()]
    assert len(run_dirs) == 1 and (run_dirs[0] / "config.yaml").is_file()
    for stage in ("pretrain", "knn"):
        result = json.loads((run_dirs[0] / stage / "result.json").read_text())
        assert result["status"] == "done" and result["cluster"] == "local"
        assert result["run_id"] == run_dirs[0].name and result["sweep"] == "local_tiny"
    assert "[2/2] knn" in first.stdout and "top1@10=" in first.stdout
    manifest = (runs / "local_tiny" / "manifest.jsonl").read_text().splitlines()
    assert [json.loads(x)["stage"] for x in manifest] == ["pretrain", "knn"]

    second = subprocess.run(cmd, cwd=ROOT, check=False, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0 and second.stdout.count("done already") == 2, second.stdout
