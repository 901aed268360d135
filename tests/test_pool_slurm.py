"""Sweeps that share a pre-training, on the REAL local Slurm cluster (clusters/local-slurm/start.sh).

Two sweep files with other names and the same cells, preset and seeds have the same run ids, so the same
pre-training. Timings on the 2-core development machine, other work beside them:
- test_a_second_sweep_shares_the_pretraining_and_its_table_fills: 58-80 s (one tiny pre-training, 3 k-NN)
- test_concurrent_submissions_and_cancel_keep_one_shared_pretraining: 5-8 s
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import wait_for

from jobs import rundir
from jobs.launcher import status, submit
from mst.atomic import read_json

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

TINY = """name: {name}
preset: tiny
repeats: 1
base_seed: 0
stages: [pretrain, knn]
overrides: {{train.epochs: {epochs}}}
grid: {{loss.restore_weight: [0.6]}}
table:
  id: T{name}
  title: "A shared pre-training"
  row_header: [Weight]
  columns:
    knn: {{label: k-NN (%), sources: [knn/top1@10]}}
  rows:
    - {{label: "0.6", cell: {{loss.restore_weight: 0.6}}}}
"""
MST_SWEEP = [str(Path(sys.executable).parent / "mst-sweep")]


def _done(runs: Path, sweep: str, run_id: str, stage: str) -> bool:
    result = read_json(rundir.SweepFolder(runs, sweep).stage(run_id, stage) / "result.json") or {}
    if result.get("status") == "failed":
        pytest.fail(f"{sweep} {stage} failed: {result.get('error')}")
    return result.get("status") == "done"


def _pretrain_jobs(runs: Path, *sweeps: str) -> list[str]:
    """Every pre-training job any of these sweeps (or the pool) recorded."""
    return sorted({str(r["job_id"]) for s in (*sweeps, rundir.POOL)
                   for r in rundir.read_manifest(rundir.SweepFolder(runs, s)) if r["stage"] == "pretrain"})


def test_a_second_sweep_shares_the_pretraining_and_its_table_fills(tmp_path, slurm_sweep):
    a, b, c = (slurm_sweep(n, TINY.format(name=n, epochs=1)) for n in ("pa", "pb", "pc"))
    runs = tmp_path / "runs"
    first = submit(str(a), "local-slurm", str(runs), out=lambda _: None)
    pre = [r for r in first if r["stage"] == "pretrain"]
    assert len(pre) == 1
    run_id, job = pre[0]["run_id"], pre[0]["job_id"]

    lines: list[str] = []
    second = submit(str(b), "local-slurm", str(runs), out=lines.append)  # while the pre-training is queued or running
    assert [(r["stage"], r["dependency"]) for r in second] == [("knn", f"afterok:{job}")]
    assert "pb: 1 pooled pre-trainings, 0 new, 1 shared (0 done, 1 queued or running)" in lines, lines
    assert all(rundir.SweepFolder(runs, s).links_pretrain(run_id) for s in ("pa", "pb"))

    wait_for(lambda: _done(runs, "pa", run_id, "knn") and _done(runs, "pb", run_id, "knn"), 900,
             "both sweeps' k-NN on the shared pre-training", poll_s=3)
    assert _pretrain_jobs(runs, "pa", "pb") == [job]  # trained once
    assert [(s.stage, s.state) for s in status(str(b), "local-slurm", runs)] == [("pretrain", "done"), ("knn", "done")]

    # one already done is reused at once: the third sweep's k-NN waits for nothing
    lines.clear()
    third = submit(str(c), "local-slurm", str(runs), out=lines.append)
    assert [(r["stage"], r["dependency"]) for r in third] == [("knn", None)]
    assert "pc: 1 pooled pre-trainings, 0 new, 1 shared (1 done, 0 queued or running)" in lines, lines
    wait_for(lambda: _done(runs, "pc", run_id, "knn"), 600, "the third sweep's k-NN", poll_s=3)
    assert _pretrain_jobs(runs, "pa", "pb", "pc") == [job]

    # the shared pre-training counts under every sweep, in mst-report status and tables
    for sweep in (a, b, c):
        out = subprocess.run([sys.executable, "-m", "analysis.cli", "status", "--runs", str(runs), "--sweep",
                              str(sweep)], check=False, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "stale" not in out.stdout and "ignored" not in out.stdout
        row = next(line for line in out.stdout.splitlines() if "pretrain" in line)
        assert row.split("│")[2].strip() == "1", out.stdout  # done: 1
        table = subprocess.run([sys.executable, "-m", "analysis.cli", "tables", "--runs", str(runs), "--sweep",
                                str(sweep), "--format", "csv"], check=False, capture_output=True, text=True, timeout=120)
        assert table.returncode == 0 and "skipped" not in table.stderr, table.stderr
        knn = read_json(rundir.SweepFolder(runs, sweep.stem).stage(run_id, "knn") / "result.json")
        knn = knn["metrics"]["top1@10"]
        assert f"{knn:.1f}" in table.stdout and "/1" not in table.stdout, table.stdout  # filled, not 0/1
    knn = [read_json(rundir.SweepFolder(runs, s).stage(run_id, "knn") / "result.json") for s in ("pa", "pb", "pc")]
    pretrain = read_json(rundir.SweepFolder(runs, rundir.POOL).stage(run_id, "pretrain") / "result.json")
    assert {k["weights_sha256"] for k in knn} == {pretrain["weights_sha256"]}  # all three read the one checkpoint


def test_concurrent_submissions_and_cancel_keep_one_shared_pretraining(tmp_path, slurm_sweep):
    a, b = (slurm_sweep(n, TINY.format(name=n, epochs=50)) for n in ("ca", "cb"))
    runs = tmp_path / "runs"
    procs = [subprocess.Popen([*MST_SWEEP, "submit", str(s), "--cluster", "local-slurm", "--runs", str(runs)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for s in (a, b)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    jobs = _pretrain_jobs(runs, "ca", "cb")
    assert len(jobs) == 1  # the pool entry's lock: one of them submitted it, the other attached to it
    (run_id, _), = rundir.latest_submissions(rundir.SweepFolder(runs, rundir.POOL))

    def states(sweep: Path) -> dict[str, str]:
        (runs / sweep.stem / ".scheduler_cache.json").unlink(missing_ok=True)
        return {s.stage: s.state for s in status(str(sweep), "local-slurm", runs)}

    out = subprocess.run([*MST_SWEEP, "cancel", str(a), "--runs", str(runs)], check=False, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "cancelled 1 jobs; left 1 shared pre-trainings that cb still wait on" in out.stdout, out.stdout
    seen: list[dict] = []
    wait_for(lambda: seen.append((states(a), states(b))) or seen[-1][0]["knn"] == "cancelled", 60,
             lambda: f"ca's k-NN to be cancelled; last seen {seen[-1:]}", poll_s=2)
    left_a, left_b = seen[-1]
    assert left_a["pretrain"] in ("queued", "running") and left_b == {"pretrain": left_a["pretrain"], "knn": "queued"}

    out = subprocess.run([*MST_SWEEP, "cancel", str(b), "--runs", str(runs)], check=False, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "cancelled 2 jobs" in out.stdout and "left" not in out.stdout, out.stdout  # no sweep waits on it now
    wait_for(lambda: states(b) == {"pretrain": "cancelled", "knn": "cancelled"}, 60, "cb's jobs to be cancelled",
             poll_s=2)
    assert rundir.SweepFolder(runs, "ca").links_pretrain(run_id)

    # a cancelled pre-training is submitted again, once: by the first sweep that asks, the next one attaches
    again = submit(str(a), "local-slurm", str(runs), resubmit=True, out=lambda _: None)
    new = [r["job_id"] for r in again if r["stage"] == "pretrain"]
    assert len(new) == 1 and new != jobs and [r["stage"] for r in again] == ["pretrain", "knn"]
    attached = submit(str(b), "local-slurm", str(runs), resubmit=True, out=lambda _: None)
    assert [(r["stage"], r["dependency"]) for r in attached] == [("knn", f"afterok:{new[0]}")]
    assert _pretrain_jobs(runs, "ca", "cb") == sorted(jobs + new)
