"""Integration tests against the REAL local Slurm clusters (clusters/local-slurm/start.sh).

Few and slow on purpose; timings measured on the 2-core development machine (both clusters on it, other
work running beside them):
- test_same_sweep_on_both_clusters: 126-139 s (2 clusters x a 2-run array x 2-task DDP pretrain, then k-NN)
- test_pretrain_interrupted_twice_matches_uninterrupted: 141-175 s
- test_status_cancel_resubmit: 2-3 s
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import sacct_records, wait_for

from jobs import rundir
from jobs.launcher import status, submit
from mst.atomic import read_json
from mst.inputs import read_jsonl

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

TINY = """name: {name}
table: A10
preset: tiny
repeats: {repeats}
base_seed: 0
stages: {stages}
overrides: {{train.epochs: {epochs}}}
grid: {{}}
"""


def _result(runs: Path, sweep: str, run_id: str, stage: str) -> dict | None:
    return read_json(rundir.SweepFolder(runs, sweep).stage(run_id, stage) / "result.json")


def _all_final(runs: Path, sweep: str, records: list[dict]) -> bool:
    results = [_result(runs, sweep, r["run_id"], r["stage"]) for r in records]
    failed = [r for r in results if r and r.get("status") == "failed"]
    if failed:
        pytest.fail(f"a stage failed: {failed[0].get('error')}")
    return all(r and r.get("status") == "done" for r in results)


def test_same_sweep_on_both_clusters(tmp_path, slurm_sweep, slurm_clusters):
    """One sweep to the emulated DCU and V100 clusters: a job array, a dependent k-NN array aligned with it,
    2-task DDP pre-training over gloo via srun, the device requests seen by a real scheduler, and equal
    weights on both clusters."""
    t0 = time.time()
    sweep = slurm_sweep("both", TINY.format(name="both", repeats=2, stages="[pretrain, knn]", epochs=1))
    runs = {c: tmp_path / f"runs-{c}" for c in ("local-dcu", "local-v100")}
    records = {c: submit(str(sweep), c, str(runs[c]), out=lambda _: None) for c in runs}
    for cluster, recs in records.items():
        pre = [r for r in recs if r["stage"] == "pretrain"]
        knn = [r for r in recs if r["stage"] == "knn"]
        array = pre[0]["job_id"].split("_")[0]
        assert [r["job_id"] for r in pre] == [f"{array}_0", f"{array}_1"]  # one array
        assert {r["dependency"] for r in knn} == {f"aftercorr:{array}"}
        assert [r["run_id"] for r in knn] == [r["run_id"] for r in pre]  # aligned task-for-task
    assert int(records["local-v100"][0]["job_id"].split("_")[0]) >= 100000  # the second cluster's own ids

    wait_for(lambda: all(_all_final(runs[c], "both", records[c]) for c in runs), 900, "both sweeps to finish",
             poll_s=3)

    for cluster, conf in (("local-dcu", slurm_clusters["dcu"]), ("local-v100", slurm_clusters["v100"])):
        recs = records[cluster]
        for pre, knn in zip(recs[:2], recs[2:]):
            p_acct = sacct_records(pre["job_id"], conf, t0)[-1]
            k_acct = sacct_records(knn["job_id"], conf, t0)[-1]
            assert k_acct["Start"] >= p_acct["End"], (p_acct, k_acct)  # the chain held
            result = _result(runs[cluster], "both", pre["run_id"], "pretrain")
            assert result["world_size"] == 2 and result["devices"] == 2  # DDP: 2 ranks via srun
            assert result["cluster"] == cluster and result["job_ids"] == [pre["job_id"]]
            seen = result["visible_devices"]
            if cluster == "local-dcu":
                assert "gres/dcu=2" in p_acct["AllocTRES"]
                # a custom gres gets no mask from Slurm: the job wrote one, one device per local rank
                assert seen.get("HIP_VISIBLE_DEVICES") == "0,1" and "CUDA_VISIBLE_DEVICES" not in seen
                assert result["device_mask"]["written_by_job"] is True
                assert result["rank_devices"] == {"0": "0", "1": "1"}
            else:
                assert "gres/gpu=2" in p_acct["AllocTRES"]
                # Slurm's mask of the job's two GPUs is kept; each rank uses the entry of its local rank
                mask = seen.get("CUDA_VISIBLE_DEVICES", "").split(",")
                assert len(mask) == 2 and result["device_mask"]["written_by_job"] is False
                assert result["rank_devices"] == {"0": mask[0], "1": mask[1]}
            assert _result(runs[cluster], "both", knn["run_id"], "knn")["status"] == "done"

    # same seeds, same config, same world size: the two clusters trained the same weights
    for pre_dcu, pre_v100 in zip(records["local-dcu"][:2], records["local-v100"][:2]):
        assert pre_dcu["run_id"] == pre_v100["run_id"]
        w = [_result(runs[c], "both", pre_dcu["run_id"], "pretrain")["weights_sha256"] for c in runs]
        assert w[0] == w[1]

    # submitting again skips what is done
    lines: list[str] = []
    assert submit(str(sweep), "local-dcu", str(runs["local-dcu"]), out=lines.append) == []
    assert any("nothing to submit" in line for line in lines)


def _log_text(runs: Path, sweep: str, run_id: str, job_id: str) -> str:
    link = rundir.SweepFolder(runs, sweep).stage(run_id, "pretrain") / "slurm" / job_id
    logs = sorted(link.glob("*_0_log.out")) if link.exists() else []
    return logs[0].read_text() if logs else ""


def _last_step(runs: Path, sweep: str, run_id: str) -> int:
    path = rundir.SweepFolder(runs, sweep).stage(run_id, "pretrain") / "metrics.jsonl"
    steps = [r.get("step", 0) for r in read_jsonl(path)]
    return max(steps, default=0)


def test_pretrain_interrupted_twice_matches_uninterrupted(tmp_path, slurm_sweep, slurm_clusters):
    """USR2 (the profile's preemption signal) and then an outside `scontrol requeue` while running; the job
    resumes from its own run folder both times and ends with the weights of an uninterrupted twin."""
    # the twin goes to a runs root of its own: in one root the pool would give both sweeps one pre-training
    t0, runs, ref_runs = time.time(), tmp_path / "runs", tmp_path / "runs-ref"
    hit, ref = (submit(str(slurm_sweep(n, TINY.format(name=n, repeats=1, stages="[pretrain]", epochs=4))),
                       "local-slurm", str(root), out=lambda _: None) for n, root in (("hit", runs), ("ref", ref_runs)))
    (run_id, job), conf = (hit[0]["run_id"], hit[0]["job_id"]), slurm_clusters["dcu"]
    assert ref[0]["run_id"] == run_id  # same config, so the same run id, in another runs root

    first = wait_for(lambda: _last_step(runs, "hit", run_id) >= 4 and _last_step(runs, "hit", run_id), 300,
                     "the job to be running")
    subprocess.run(["scancel", "--signal=USR2", job], check=True, timeout=30)
    wait_for(lambda: _log_text(runs, "hit", run_id, job).count("Starting with JobEnvironment") >= 2, 300,
             "the USR2 requeue to restart the job")
    log = _log_text(runs, "hit", run_id, job)
    assert "Calling checkpoint method." in log and "requeueing" in log  # submitit's path, at a step boundary

    second = wait_for(lambda: _last_step(runs, "hit", run_id) >= first + 4 and _last_step(runs, "hit", run_id),
                      300, "the requeued job to make progress")
    assert _result(runs, "hit", run_id, "pretrain") is None or \
        _result(runs, "hit", run_id, "pretrain")["status"] != "done", "finished before the second interruption"
    subprocess.run(["scontrol", "requeue", job], check=True, timeout=30)
    wait_for(lambda: _log_text(runs, "hit", run_id, job).count("Starting with JobEnvironment") >= 3, 300,
             "the outside requeue to restart the job")
    log = _log_text(runs, "hit", run_id, job)
    assert log.count("Calling checkpoint method.") == 1  # an outside requeue calls no checkpoint()
    assert "waiting for Slurm" in log  # SIGTERM set the flag; it saved at the next step boundary

    wait_for(lambda: _all_final(runs, "hit", hit) and _all_final(ref_runs, "ref", ref), 600, "both runs to finish",
             poll_s=2)
    done, twin = _result(runs, "hit", run_id, "pretrain"), _result(ref_runs, "ref", run_id, "pretrain")
    assert done["metrics"]["steps"] == twin["metrics"]["steps"] == 32
    assert done["weights_sha256"] == twin["weights_sha256"]
    assert done["job_ids"] == [job]  # requeues keep the job id; the folder is keyed by run id anyway
    wait_for(lambda: sacct_records(job, conf, t0)[-1]["State"] == "COMPLETED", 120, "the job to end COMPLETED")
    states = [r["State"] for r in sacct_records(job, conf, t0, duplicates=True)]
    assert states == ["REQUEUED", "REQUEUED", "COMPLETED"], states  # two interruptions, one job id
    assert second > first


def test_status_cancel_resubmit(tmp_path, slurm_sweep):
    """status reads markers and polls once; cancel cancels; resubmit picks the cancelled runs only."""
    sweep = slurm_sweep("cr", TINY.format(name="cr", repeats=2, stages="[pretrain, knn]", epochs=50))
    runs = tmp_path / "runs"
    recs = submit(str(sweep), "local-slurm", str(runs), out=lambda _: None)
    assert len(recs) == 4
    calls: list[int] = []
    states = status(str(sweep), "local-slurm", runs, counter=lambda: calls.append(1))
    assert {s.state for s in states} <= {"queued", "running"} and len(calls) == 1
    status(str(sweep), "local-slurm", runs, counter=lambda: calls.append(1))
    assert len(calls) == 1  # cached for a minute

    proc = subprocess.run([str(Path(sys.executable).parent / "mst-sweep"), "cancel", str(sweep), "--runs", str(runs)], check=False, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"cancelled 4 jobs", proc.stdout), proc.stdout

    seen: list[str] = []

    def all_cancelled():
        got = status(str(sweep), "local-slurm", runs)
        (runs / "cr" / ".scheduler_cache.json").unlink(missing_ok=True)
        seen[:] = [f"{s.run_id}/{s.stage}={s.state} ({s.detail})" for s in got]
        return all(s.state == "cancelled" for s in got)

    wait_for(all_cancelled, 60, lambda: "the jobs to show as cancelled; last seen: " + "; ".join(seen), poll_s=2)
    again = submit(str(sweep), "local-slurm", str(runs), resubmit=True, out=lambda _: None)
    assert sorted((r["run_id"], r["stage"]) for r in again) == sorted((r["run_id"], r["stage"]) for r in recs)
    assert {r["job_id"] for r in again}.isdisjoint({r["job_id"] for r in recs})
    manifest = [json.loads(x) for x in (runs / "cr" / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == 8
