"""`make sweep SWEEP=loss_weight BUDGET=smoke CLUSTER=local-slurm`, then `mst-report tables`, through the real local
Slurm cluster: the demo's pipeline (launcher, job arrays, afterok-aligned k-NN, records, report) with the
sweep's per-run budget cut further so the test stays short (the footnote prints the budget it ran with)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import wait_for

from jobs import rundir
from mst.atomic import read_json
from mst.inputs import read_jsonl

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]


def test_make_sweep_loss_weight_smoke_on_local_slurm(tmp_path, slurm_clusters, slurm_sweep):
    sweep = yaml.safe_load((ROOT / "sweeps/loss_weight.yaml").read_text())
    sweep["budgets"]["smoke"].setdefault("overrides", {}).update({
        "train.epochs": 1, "data.train_subset": 256, "data.test_subset": 256, "train.batch_size": 64,
        "data.num_workers": 0})
    path = slurm_sweep("loss_weight", yaml.safe_dump(sweep, sort_keys=False))
    runs = tmp_path / "runs"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    make = subprocess.run(["make", "-C", str(ROOT), "sweep", f"SWEEP={path}", "BUDGET=smoke", "CLUSTER=local-slurm",
                           f"RUNS={runs}", f"MST_PY={sys.executable}"], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert make.returncode == 0, make.stdout[-2000:] + make.stderr[-2000:]

    manifest = read_jsonl(rundir.SweepFolder(runs, "loss_weight_smoke").manifest)
    assert {m["stage"] for m in manifest} == {"pretrain", "knn"} and len(manifest) == 16   # 4 weights x 2 seeds

    def knn_done() -> bool:
        sweep = rundir.SweepFolder(runs, "loss_weight_smoke")
        results = [read_json(sweep.stage(m["run_id"], "knn") / "result.json") for m in manifest if m["stage"] == "knn"]
        failed = [r for r in results if r and r.get("status") == "failed"]
        assert not failed, failed[0].get("error")
        return all(r and r.get("status") == "done" for r in results)
    wait_for(knn_done, 900, "the 8 k-NN stages of the sweep", poll_s=3)

    report = subprocess.run([str(Path(sys.executable).parent / "mst-report"), "tables", "--runs", str(runs), "--sweep",
                             str(path), "--budget", "smoke", "--format", "md"], capture_output=True, text=True, timeout=120, check=False)
    assert report.returncode == 0, report.stderr
    table = report.stdout
    for weight, paper in (("0.2", "73.7"), ("0.4", "73.5"), ("0.6", "73.9"), ("0.8", "73.6")):
        row = next((line for line in table.splitlines() if line.startswith(f"| {weight}")), None)
        assert row is not None, table
        assert paper in row and "(n=2)" in row.replace(" ", ""), row
    assert "ddof = 1" in table and "train.epochs" in table
