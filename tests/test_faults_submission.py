"""Faults in a sweep's life on the orchestration side (jobs/, analysis/status): a failing local cell,
resubmission next to a live pre-training, concurrent submissions, and the running/preempted records that both
status commands read.

The scheduler is the stand-in of tests/test_faults_jobs.py (`_fake_slurm` in tests/conftest.py); the real
clusters are in tests/test_slurm.py.
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MST_SWEEP, _cli, _fake_slurm, _one_error_line, _profile, _seed_manifest, _sweep

from jobs import rundir
from jobs.profiles import load_profile
from mst.atomic import read_json
from mst.inputs import read_jsonl

PLAIN_LOCAL = Path(__file__).resolve().parent / "fixtures" / "local_plain.yaml"


# ------------------------------------------------------------------------ class 5: local sweeps go on


def test_a_failing_local_cell_is_recorded_and_the_others_still_run(tmp_path):
    """Both cells point at data that does not exist (fails in seconds, no training): each pre-training fails
    and is recorded, each k-NN is skipped, and the command ends with one summary line and exit 1."""
    sweep = _sweep(tmp_path, "cells", grid="{data.root: [/nonexistent/a, /nonexistent/b]}")
    runs = tmp_path / "runs"
    proc = _cli(["submit", str(sweep), "--cluster", str(PLAIN_LOCAL), "--runs", str(runs)], cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    line = proc.stderr.strip().splitlines()[-1]  # the progress rules go to stderr too; the summary ends it
    assert line.startswith("error: sweep cells: 0 of 4 stages done, 2 failed, 2 skipped (first: pretrain "), line
    records = [read_json(p) for p in runs.glob("cells/*/pretrain/result.json")]
    assert len(records) == 2 and all(r["status"] == "failed" and r["error"] for r in records)
    assert not list(runs.glob("cells/*/knn/result.json"))
    assert proc.stdout.count("skipped (its pretrain failed)") == 2


def test_previously_failed_cells_run_last(tmp_path):
    """A resubmission runs the cells that never failed first: a known-bad cell never delays the rest."""
    from jobs.plan import resolve_runs
    from jobs.sweep import load_sweep

    sweep = load_sweep(str(_sweep(tmp_path, "order", grid="{loss.restore_weight: [0.2, 0.4, 0.6]}")))
    runs = resolve_runs(sweep, load_profile("local"))
    bad = rundir.SweepFolder(tmp_path, "order").stage(runs[0].run_id, "pretrain")
    bad.mkdir(parents=True)
    (bad / "result.json").write_text(json.dumps({"status": "failed"}))
    assert [r.run_id for r in rundir.failed_last(rundir.SweepFolder(tmp_path, "order"), runs, sweep.stages)] == \
        [runs[1].run_id, runs[2].run_id, runs[0].run_id]


# ------------------------------------------------------------------------ class 6: resubmit keeps the chain


def test_resubmit_makes_downstream_wait_for_a_live_pretraining(tmp_path, monkeypatch):
    """A partial submission left pre-training queued (one run) and running (the other), with no k-NN: the
    resubmitted k-NN jobs each depend on their own live pre-training job, none is submitted unguarded."""
    from jobs.launcher import submit
    from jobs.plan import resolve_runs
    from jobs.sweep import load_sweep

    fake = _fake_slurm(tmp_path)
    monkeypatch.setenv("PATH", fake["env"]["PATH"])
    monkeypatch.delenv("SLURM_CONF", raising=False)
    sweep_path, profile = _sweep(tmp_path, "chain", repeats=2), _profile(tmp_path)
    runs = tmp_path / "runs"
    ids = [r.run_id for r in resolve_runs(load_sweep(str(sweep_path)), load_profile(str(profile)))]
    _seed_manifest(runs, "chain", [{"run_id": rid, "stage": "pretrain", "job_id": f"77_{i}", "cluster": "fake"}
                                   for i, rid in enumerate(ids)])
    (fake["state"] / "sacct.txt").write_text("77_0|PENDING\n77_1|RUNNING\n")
    records = submit(str(sweep_path), str(profile), str(runs), resubmit=True, out=lambda _: None)
    assert sorted((r["stage"], r["dependency"]) for r in records) == [("knn", "afterok:77_0"),
                                                                       ("knn", "afterok:77_1")]
    scripts = [p.read_text() for p in (fake["state"] / "scripts").iterdir()]
    assert len(scripts) == 2
    assert sorted(ln for s in scripts for ln in s.splitlines() if "--dependency" in ln) == [
        "#SBATCH --dependency=afterok:77_0", "#SBATCH --dependency=afterok:77_1"]


def test_resubmit_dry_run_lists_what_and_why_and_submits_nothing(tmp_path):
    """One pre-training cancelled, the other running, no k-NN yet: the dry run names the three stages a
    resubmission would send with the state that sends them, and calls no sbatch nor writes the manifest."""
    from jobs.plan import resolve_runs
    from jobs.sweep import load_sweep

    fake = _fake_slurm(tmp_path)
    sweep_path, profile = _sweep(tmp_path, "dry", repeats=2), _profile(tmp_path)
    runs = tmp_path / "runs"
    ids = [r.run_id for r in resolve_runs(load_sweep(str(sweep_path)), load_profile(str(profile)))]
    _seed_manifest(runs, "dry", [{"run_id": rid, "stage": "pretrain", "job_id": f"77_{i}", "cluster": "fake",
                                  "time": "2026-01-01T00:00:00Z"} for i, rid in enumerate(ids)])
    manifest = (runs / "dry" / "manifest.jsonl").read_text()
    (fake["state"] / "sacct.txt").write_text("77_0|CANCELLED by 0\n77_1|RUNNING\n")
    proc = _cli(["resubmit", str(sweep_path), "--cluster", str(profile), "--runs", str(runs), "--dry-run"],
                env=fake["env"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    would = [ln for ln in proc.stdout.splitlines() if ln.startswith("would resubmit")]
    assert len(would) == 3, proc.stdout
    assert would[0].startswith(f"would resubmit pretrain {ids[0]} ") and \
        would[0].endswith(": cancelled, CANCELLED (job 77_0)")
    assert {ln.split()[2:4][0] for ln in would[1:]} == {"knn"}
    assert all(ln.endswith(": missing, never submitted") for ln in would[1:])
    assert "dry run, nothing resubmitted" in proc.stdout
    assert "sbatch" not in fake["log"].read_text()
    assert (runs / "dry" / "manifest.jsonl").read_text() == manifest


def test_plan_never_leaves_a_downstream_stage_of_a_live_pretraining_unguarded():
    from jobs.plan import Run, plan_arrays
    from jobs.scheduler import dependency_of

    runs = [Run(f"r{i}", None, None) for i in range(3)]
    arrays = plan_arrays({"pretrain": runs[:1], "knn": runs}, ("pretrain", "knn"), 10, live={"r1": "5_1"})
    assert [(a.stage, [r.run_id for r in a.runs], a.after, a.waits_for) for a in arrays] == [
        ("pretrain", ["r0"], None, None), ("knn", ["r0"], 0, None), ("knn", ["r1"], None, "5_1"),
        ("knn", ["r2"], None, None)]  # r2's pre-training is done
    assert dependency_of([["9"]], arrays[2]) == "afterok:5_1"


# ------------------------------------------------------------------------ class 8: one submission at a time


def test_a_second_submission_of_a_sweep_is_refused_while_one_runs(tmp_path):
    fake = _fake_slurm(tmp_path)
    sweep_path, runs = _sweep(tmp_path, "locked"), tmp_path / "runs"
    lock = runs / "locked" / ".submit.lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("4242\n")
        held.flush()
        proc = _cli(["submit", str(sweep_path), "--cluster", str(_profile(tmp_path)), "--runs", str(runs)],
                    env=fake["env"], cwd=tmp_path)
    line = _one_error_line(proc)
    assert line.startswith("error: another submission of sweep locked is running (pid 4242)"), line
    assert not (runs / "locked" / "manifest.jsonl").exists()
    assert "sbatch" not in (fake["log"].read_text() if fake["log"].exists() else "")


def test_concurrent_submissions_never_submit_a_run_twice(tmp_path):
    """Two submissions started together (sbatch slowed down to widen the race): each (run, stage) is
    submitted once; a refused one says why in one line."""
    fake = _fake_slurm(tmp_path, sbatch_delay_s=1.5)
    sweep_path, runs, profile = _sweep(tmp_path, "race", repeats=2), tmp_path / "runs", _profile(tmp_path)
    cmd = MST_SWEEP + ["submit", str(sweep_path), "--cluster", str(profile), "--runs", str(runs)]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=fake["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    manifest = [(r["run_id"], r["stage"]) for r in read_jsonl(runs / "race" / "manifest.jsonl")]
    assert len(manifest) == 4 and len(set(manifest)) == 4, manifest
    for proc, (_, err) in zip(procs, outs):
        if proc.returncode != 0:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and "another submission of sweep race is running (pid " in lines[0], err


# ------------------------------------------------------------------------ class 11: running and preempted


@pytest.mark.parametrize(("marker", "sched", "state"), [
    ("preempted", "PENDING", "preempted"),      # saved and requeued by its own signal path
    ("running", "REQUEUED", "preempted"),       # requeued from outside (SIGTERM path) after it started
    ("running", "PENDING", "preempted"),        # killed hard and requeued: it started before
])  # (None, PENDING) stays queued: test_launcher.py::test_state_classification
def test_status_tells_a_preempted_run_from_a_queued_one(marker, sched, state):
    from jobs.runstate import classify

    assert classify(marker, sched, "1_0")[0] == state


def test_a_stage_job_writes_running_at_start_and_preempted_when_it_stops(tmp_path):
    """The job layer's records around a method that saves and stops at a step boundary."""
    from analysis.collect import check_record
    from jobs.config_io import load_config
    from jobs.stage_job import StageJob
    from mst.config import config_to_dict
    from mst.train import Interrupted

    seen: list[str | None] = []

    class StopsAtOnce(StageJob):
        def run(self, cfg, should_stop, extra):
            seen.append(rundir.result_status(self.out_dir))
            raise Interrupted("saved at step 3")

    extra = {"run_id": "abc-r0", "sweep": "s", "cell": {}, "repeat": 0, "seed": 0, "cluster": "local"}
    job = StopsAtOnce("pretrain", runs_root=str(tmp_path), sweep="s", run_id="abc-r0",
                      config=config_to_dict(load_config("tiny")), extra=extra)
    with pytest.raises(Interrupted):
        job()
    assert seen == ["running"]
    path = tmp_path / "s" / "abc-r0" / "pretrain" / "result.json"
    record = json.loads(path.read_text())
    assert record["status"] == "preempted" and check_record(record, "s", "abc-r0", "pretrain") is None

    # a finished stage's record is never replaced by a progress one
    path.write_text(json.dumps({**record, "status": "done"}))
    with pytest.raises(Interrupted):
        job()
    assert seen == ["running", "done"] and json.loads(path.read_text())["status"] == "done"


def test_both_status_commands_speak_one_vocabulary(tmp_path):
    """mst-report status's states are mst-sweep status's words (jobs.runstate), with the same meaning for
    the records: a preempted record is preempted in both, a submission without a record is queued."""
    from analysis import status as report_status
    from jobs import runstate

    assert report_status.STATES is runstate.WITHOUT_SCHEDULER and set(runstate.WITHOUT_SCHEDULER) <= set(runstate.STATES)
    assert runstate.from_record("preempted", True) == "preempted" == runstate.classify("preempted", None, "1_0",
                                                                                       age_s=1.0)[0]
    assert runstate.from_record(None, True) == "queued" == runstate.classify(None, None, "1_0", age_s=1.0)[0]
    assert runstate.from_record(None, False) == "missing" == runstate.classify(None, None, None)[0]


def test_both_status_views_agree_on_a_local_stage_that_left_no_record():
    """An in-process stage writes 'running' as it starts: one submitted without a record never started, and
    both commands call it failed; counts come out in the vocabulary's order with every word present."""
    from jobs import runstate

    assert runstate.from_record(None, True, local=True) == "failed" == runstate.sweep_view(None, "local-7", None)[0]
    assert runstate.sweep_view("running", "local-7", None)[0] == "running"
    assert runstate.sweep_view(None, "1_0", None, asked=False)[0] == "unknown"
    counts = runstate.count_by_stage([("knn", "failed"), ("pretrain", "done"), ("knn", "failed")],
                                     ("pretrain", "knn"), runstate.WITHOUT_SCHEDULER)
    assert counts == {"pretrain": {**dict.fromkeys(runstate.WITHOUT_SCHEDULER, 0), "done": 1},
                      "knn": {**dict.fromkeys(runstate.WITHOUT_SCHEDULER, 0), "failed": 2}}
    assert list(counts["knn"]) == list(runstate.WITHOUT_SCHEDULER)


def test_submission_skips_preempted_runs(tmp_path, monkeypatch):
    """A preempted pre-training waits in the scheduler to resume: submitting again must not duplicate it."""
    from jobs.launcher import submit
    from jobs.plan import resolve_runs
    from jobs.sweep import load_sweep

    fake = _fake_slurm(tmp_path)
    monkeypatch.setenv("PATH", fake["env"]["PATH"])
    monkeypatch.delenv("SLURM_CONF", raising=False)
    sweep_path, profile, runs = _sweep(tmp_path, "pre", stages="[pretrain]"), _profile(tmp_path), tmp_path / "runs"
    run_id = resolve_runs(load_sweep(str(sweep_path)), load_profile(str(profile)))[0].run_id
    _seed_manifest(runs, "pre", [{"run_id": run_id, "stage": "pretrain", "job_id": "77_0", "cluster": "fake"}])
    out = rundir.SweepFolder(runs, "pre").stage(run_id, "pretrain")
    out.mkdir(parents=True)
    (out / "result.json").write_text(json.dumps({"status": "preempted"}))
    (fake["state"] / "sacct.txt").write_text("77_0|REQUEUED\n")
    lines: list[str] = []
    assert submit(str(sweep_path), str(profile), str(runs), out=lines.append) == []
    assert any("1 preempted" in ln for ln in lines), lines
    assert not list((fake["state"] / "scripts").iterdir())


def test_sweep_status_and_report_status_both_show_the_requeued_run_as_preempted(tmp_path):
    """A job that saved and went back to the queue: its record says preempted, the scheduler says PENDING.
    Both commands print 'preempted' for it, not 'queued'."""
    from analysis.synthetic import record, write_record
    from jobs.plan import resolve_runs
    from jobs.sweep import load_sweep

    fake = _fake_slurm(tmp_path)
    sweep_path, profile, runs = _sweep(tmp_path, "both", stages="[pretrain]"), _profile(tmp_path), tmp_path / "runs"
    spec = resolve_runs(load_sweep(str(sweep_path)), load_profile(str(profile)))[0].spec
    _seed_manifest(runs, "both", [{"run_id": spec.run_id, "stage": "pretrain", "job_id": "77_0", "cluster": "fake"}])
    write_record(runs, record(spec, "pretrain", "preempted"))
    (fake["state"] / "sacct.txt").write_text("77_0|PENDING\n")
    proc = _cli(["status", str(sweep_path), "--runs", str(runs), "--cluster", str(profile)], env=fake["env"],
                cwd=tmp_path)
    assert "pretrain     preempted 1" in proc.stdout and "queued" not in proc.stdout, proc.stdout + proc.stderr
    report = subprocess.run([sys.executable, "-m", "analysis.cli", "status", "--runs", str(runs), "--sweep",
                             str(sweep_path)], cwd=tmp_path, check=False, capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    header = next(ln for ln in report.stdout.splitlines() if "preempted" in ln)
    row = next(ln for ln in report.stdout.splitlines() if "pretrain" in ln)
    cells = [c.strip() for c in row.split("\u2502") if c.strip()]
    names = [c.strip() for c in header.split("\u2503") if c.strip()]
    assert dict(zip(names, cells))["preempted"] == "1" and dict(zip(names, cells))["queued"] == "0", report.stdout


def test_a_stage_job_refused_a_busy_folder_leaves_the_holders_record_alone(tmp_path):
    """A second job on a stage folder that a live process holds is refused; it writes no 'failed' record into
    the folder, whose record belongs to the holder."""
    from jobs.config_io import load_config
    from jobs.stage_job import StageJob
    from mst.config import config_to_dict
    from mst.run.folder import StageFolderBusy, locked_stage_folder

    extra = {"run_id": "abc-r0", "sweep": "s", "cell": {}, "repeat": 0, "seed": 0, "cluster": "local"}
    job = StageJob("pretrain", runs_root=str(tmp_path), sweep="s", run_id="abc-r0",
                      config=config_to_dict(load_config("tiny")), extra=extra)
    job.out_dir.mkdir(parents=True)
    with locked_stage_folder(job.out_dir), pytest.raises(StageFolderBusy):
        job()
    assert rundir.result_status(job.out_dir) != "failed"
