"""Hostile inputs and faults against the orchestration side (jobs/, analysis/status): hostile profiles and
sweep names, a failing local cell, resubmission next to a live pre-training, concurrent submissions, torn or
malformed manifests, config.yaml, scheduler caches and sacct output, and the running/preempted records.

The scheduler is a set of stand-in commands on PATH (the process boundary): they log their calls, answer
sbatch with job ids and sacct with the states a test sets. The real clusters are in tests/test_slurm.py.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from jobs import rundir
from jobs.profiles import ProfileError, load_profile, setup_lines

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = Path(__file__).resolve().parent / "fixtures" / "hostile"
PLAIN_LOCAL = Path(__file__).resolve().parent / "fixtures" / "local_plain.yaml"
MST_SWEEP = [sys.executable, "-m", "jobs.cli.sweep"]

SWEEP = """name: {name}
table: A10
preset: tiny
repeats: {repeats}
base_seed: 0
stages: {stages}
overrides: {{train.epochs: 1}}
grid: {grid}
"""


def _sweep(tmp_path: Path, name: str = "hf", repeats: int = 1, stages: str = "[pretrain, knn]",
           grid: str = "{}") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(SWEEP.format(name=name, repeats=repeats, stages=stages, grid=grid))
    return path


def _fake_slurm(tmp_path: Path, sbatch_delay_s: float = 0.0) -> dict:
    """Stand-ins for sbatch & co. sbatch copies each script to scripts/ and answers with a fresh job id;
    sacct prints the header and the lines of sacct.txt (what a test sets); sinfo names partition debug."""
    bin_dir, state = tmp_path / "bin", tmp_path / "slurm-state"
    bin_dir.mkdir()
    (state / "scripts").mkdir(parents=True)
    (state / "sacct.txt").write_text("")
    log = state / "calls.log"
    scripts = {
        "sbatch": f"""#!/bin/bash
echo "sbatch $*" >> {log}
sleep {sbatch_delay_s}
exec 9>>{state}/counter.lock; flock 9
n=$(( $(cat {state}/counter 2>/dev/null || echo 500) + 1 )); echo $n > {state}/counter
cp "${{@: -1}}" {state}/scripts/$n.sbatch
echo "Submitted batch job $n"
""",
        "sacct": f"#!/bin/bash\necho \"sacct $*\" >> {log}\necho 'JobID|State'\ncat {state}/sacct.txt\n",
        "sinfo": f"#!/bin/bash\necho \"sinfo $*\" >> {log}\necho debug\n",
    }
    for tool in ("srun", "scontrol", "squeue", "scancel"):
        scripts[tool] = f"#!/bin/bash\necho \"{tool} $*\" >> {log}\n"
    for tool, text in scripts.items():
        (bin_dir / tool).write_text(text)
        (bin_dir / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env.pop("SLURM_CONF", None)
    return {"env": env, "state": state, "log": log, "bin": bin_dir}


def _profile(tmp_path: Path, name: str = "fake") -> Path:
    """A slurm profile for the stand-in scheduler (no slurm_conf: the stand-ins ignore it anyway)."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"""name: {name}
scheduler: slurm
placement: {{partition: debug}}
accelerators: {{kind: cpu, per_node: 0, request: none}}
resources: {{nodes: 1, tasks_per_node: 1, cpus_per_task: 1, mem_gb: 1, time_min: 10}}
downstream: {{nodes: 1, tasks_per_node: 1, cpus_per_task: 1, mem_gb: 1, time_min: 10}}
storage: {{run_root: runs, scratch: /tmp, data_roots: {{fashion_mnist: /usr/share/datasets/fashion-mnist}}}}
""")
    return path


def _cli(args: list[str], env: dict | None = None, cwd: Path = ROOT, timeout: int = 300
         ) -> subprocess.CompletedProcess:
    return subprocess.run(MST_SWEEP + args, cwd=cwd, env=env, check=False, capture_output=True, text=True,
                          timeout=timeout)


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


# ------------------------------------------------------------------------ class 2: hostile profiles


REFUSED = {
    "partition_newline": "placement.partition contains a newline; use a plain Slurm partition name",
    "account_semicolon": "placement.account 'acct; touch PWNED' holds characters Slurm does not accept",
    "qos_space": "placement.qos 'normal --time=99999' holds characters Slurm does not accept",
    "constraint_newline": "placement.constraint contains a carriage return",
    "env_key": "environment.env key 'X=1; touch PWNED; Y' is not a variable name",
    "env_value_newline": "environment.env.GREETING contains a newline",
    "setup_newline": "environment.setup[0] contains a newline; split it into separate setup items",
    "slurm_conf_newline": "slurm_conf contains a newline",
    "python_control": "environment.python contains a control character",
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_hostile_profile_is_refused_in_one_line_naming_the_field(tmp_path, name):
    """Even a dry run refuses it: nothing is printed, written or submitted, and the line names the field."""
    fake = _fake_slurm(tmp_path)
    runs = tmp_path / "runs"
    proc = _cli(["submit", str(_sweep(tmp_path)), "--cluster", str(HOSTILE / f"{name}.yaml"), "--runs", str(runs),
                 "--dry-run"], env=fake["env"], cwd=tmp_path)
    line = _one_error_line(proc)
    assert line.startswith(f"error: profile {HOSTILE / name}.yaml: ") and REFUSED[name] in line, line
    assert "#!/bin/bash" not in proc.stdout and not runs.exists() and not fake["log"].exists()
    assert not list(tmp_path.glob("PWNED*"))


def _setup_section(script: str) -> list[str]:
    lines = script.splitlines()
    return lines[lines.index("# setup") + 1:lines.index("# command") - 1]


def test_quoted_profile_values_reach_the_job_literally(tmp_path):
    """The script's own setup lines, run by bash: nothing executes, each variable holds the profile's text,
    and only the $VAR slots expand."""
    from jobs.scheduler import render_sbatch

    profile = load_profile(str(HOSTILE / "quoted_values.yaml"))
    script = render_sbatch(profile, "pretrain", "mst-x-pretrain", tmp_path / "sub" / "%j", 1)
    names = ["MST_SCRATCH", "SLURM_CONF", "SUBST", "TICKS", "QUOTE", "BACKSLASH", "SLOT"]
    probe = "\n".join(_setup_section(script) + [f'printf "%s\\0" "${n}"' for n in names])
    home = {"HOME": "/home/u", "USER": "u", "PATH": os.environ["PATH"]}
    out = subprocess.run(["bash", "-c", probe], cwd=tmp_path, env=home, capture_output=True, timeout=30,
                         check=True).stdout.decode().split("\0")[:-1]
    env = profile.environment.env
    assert dict(zip(names, out)) == {
        "MST_SCRATCH": '/tmp/"$(touch PWNED_SCRATCH)"', "SLURM_CONF": "/etc/slurm/slurm.conf; touch PWNED_CONF",
        "SUBST": env["SUBST"], "TICKS": env["TICKS"], "QUOTE": env["QUOTE"], "BACKSLASH": "end\\",
        "SLOT": "/home/u/x-u-$$"}
    assert not list(tmp_path.glob("PWNED*"))
    # the interpreter is one word of srun's command line
    command = next(ln for ln in script.splitlines() if ln.startswith("srun "))
    words = shlex.split(command)
    assert words[words.index("-u") - 1] == "python; touch PWNED_PYTHON"


def test_setup_lines_refuse_an_env_key_a_hand_built_profile_slips_in():
    import dataclasses

    profile = load_profile("local-slurm")
    bad = dataclasses.replace(profile, environment=dataclasses.replace(profile.environment,
                                                                       env={"A;touch PWNED": "1"}))
    with pytest.raises(ProfileError, match="is not a variable name"):
        setup_lines(bad)


@pytest.mark.parametrize("root", ["runs with space", "runs\nx", "runs;touch PWNED", "runs$(id)"])
def test_a_runs_root_that_cannot_travel_in_a_script_is_refused(tmp_path, root):
    fake = _fake_slurm(tmp_path)
    proc = _cli(["submit", str(_sweep(tmp_path)), "--cluster", str(_profile(tmp_path)), "--runs", root,
                 "--dry-run"], env=fake["env"], cwd=tmp_path)
    line = _one_error_line(proc)
    assert "runs root" in line and "--runs" in line, line
    assert "#!/bin/bash" not in proc.stdout and not fake["log"].exists()


# ------------------------------------------------------------------------ class 3: containment


def test_a_sweep_named_dotdot_is_refused_before_anything_is_written(tmp_path):
    runs = tmp_path / "inner" / "runs"
    runs.mkdir(parents=True)
    before = sorted(p.name for p in (tmp_path / "inner").iterdir())
    proc = _cli(["submit", str(HOSTILE / "...yaml"), "--cluster", "local", "--runs", str(runs)], cwd=tmp_path)
    line = _one_error_line(proc)
    assert "sweep name '..' is not a path-safe name" in line, line
    assert sorted(p.name for p in (tmp_path / "inner").iterdir()) == before and not list(runs.iterdir())


@pytest.mark.parametrize(("kind", "parts"), [("sweep name", ("..", "r", "pretrain")),
                                             ("run id", ("s", "../../x", "pretrain")),
                                             ("stage", ("s", "r", "/etc")),
                                             ("run id", ("s", ".hidden", "pretrain"))])
def test_run_folder_names_must_be_path_safe(tmp_path, kind, parts):
    with pytest.raises(ValueError, match=f"{kind} .* is not a path-safe name"):  # rundir.RunFolderError
        rundir.stage_dir(tmp_path, *parts)


def test_a_planted_link_cannot_take_writes_outside_the_runs_root(tmp_path):
    """A run folder that is a symlink elsewhere (a careless colleague's) is refused; nothing is written there."""
    from jobs.launcher import write_run_configs
    from jobs.plan import resolve_runs
    from jobs.sweep import load_sweep

    sweep = load_sweep(str(_sweep(tmp_path, "contain")))
    runs, outside = tmp_path / "runs", tmp_path / "outside"
    outside.mkdir()
    resolved = resolve_runs(sweep, load_profile("local"))
    (runs / "contain").mkdir(parents=True)
    (runs / "contain" / resolved[0].run_id).symlink_to(outside)
    with pytest.raises((ValueError, RuntimeError), match="outside the runs root"):  # RunFolderError, LaunchError
        write_run_configs(resolved, runs, "local")
    assert list(outside.iterdir()) == []


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
    records = [rundir.read_result(p.parent) for p in runs.glob("cells/*/pretrain/result.json")]
    assert len(records) == 2 and all(r["status"] == "failed" and r["error"] for r in records)
    assert not list(runs.glob("cells/*/knn/result.json"))
    assert proc.stdout.count("skipped (its pretrain failed)") == 2


def test_previously_failed_cells_run_last(tmp_path):
    """A resubmission runs the cells that never failed first: a known-bad cell never delays the rest."""
    from jobs.plan import local_order, resolve_runs
    from jobs.sweep import load_sweep

    sweep = load_sweep(str(_sweep(tmp_path, "order", grid="{loss.restore_weight: [0.2, 0.4, 0.6]}")))
    runs = resolve_runs(sweep, load_profile("local"))
    bad = rundir.stage_dir(tmp_path, "order", runs[0].run_id, "pretrain")
    bad.mkdir(parents=True)
    (bad / "result.json").write_text(json.dumps({"status": "failed"}))
    assert [r.run_id for r in local_order(runs, sweep.stages, tmp_path, "order")] == \
        [runs[1].run_id, runs[2].run_id, runs[0].run_id]


# ------------------------------------------------------------------------ class 6: resubmit keeps the chain


def _seed_manifest(runs: Path, sweep: str, records: list[dict]) -> None:
    rundir.append_manifest(runs, sweep, records)


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


def test_plan_never_leaves_a_downstream_stage_of_a_live_pretraining_unguarded():
    from jobs.plan import Run, dependency, plan_arrays

    runs = [Run(f"r{i}", None, None) for i in range(3)]
    arrays = plan_arrays({"pretrain": runs[:1], "knn": runs}, ("pretrain", "knn"), 10, live={"r1": "5_1"})
    assert [(a.stage, [r.run_id for r in a.runs], a.after, a.waits_for) for a in arrays] == [
        ("pretrain", ["r0"], None, None), ("knn", ["r0"], 0, None), ("knn", ["r1"], None, "5_1"),
        ("knn", ["r2"], None, None)]  # r2's pre-training is done
    assert dependency([["9"]], arrays[2]) == "afterok:5_1"


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
    manifest = [(r["run_id"], r["stage"]) for r in rundir.read_jsonl(runs / "race" / "manifest.jsonl")]
    assert len(manifest) == 4 and len(set(manifest)) == 4, manifest
    for proc, (_, err) in zip(procs, outs):
        if proc.returncode != 0:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and "another submission of sweep race is running (pid " in lines[0], err


# ------------------------------------------------------------------------ class 10: malformed files


@pytest.mark.parametrize("bad_line", ['[1, 2]', '{"foo": 1}', '{"run_id": "../x", "stage": "pretrain", "job_id": "1"}',
                                      '{"run_id": "a", "stage": "pretrain", "job_id": "1", "time": 5}'])
def test_a_malformed_manifest_is_one_line_for_both_status_commands_and_is_kept(tmp_path, bad_line):
    fake = _fake_slurm(tmp_path)
    sweep_path, runs = _sweep(tmp_path, "mf"), tmp_path / "runs"
    manifest = runs / "mf" / "manifest.jsonl"
    manifest.parent.mkdir(parents=True)
    good = json.dumps({"run_id": "a", "stage": "pretrain", "job_id": "1_0", "cluster": "fake",
                       "time": "2026-01-01T00:00:00Z"})
    manifest.write_text(f"{good}\n{bad_line}\n{good}\n")
    before = manifest.read_bytes()
    for args in (["status", str(sweep_path), "--runs", str(runs), "--cluster", str(_profile(tmp_path))],
                 ["status", str(sweep_path), "--runs", str(runs)],
                 ["resubmit", str(sweep_path), "--runs", str(runs), "--cluster", str(_profile(tmp_path))]):
        line = _one_error_line(_cli(args, env=fake["env"], cwd=tmp_path))
        assert f"{manifest} line 2 " in line, line
    report = subprocess.run([sys.executable, "-m", "analysis.cli", "status", "--runs", str(runs), "--sweep",
                             str(sweep_path)], cwd=tmp_path, check=False, capture_output=True, text=True, timeout=120)
    assert f"{manifest} line 2 " in _one_error_line(report)
    assert manifest.read_bytes() == before


def test_a_torn_manifest_line_does_not_swallow_the_next_submission(tmp_path):
    rundir.append_manifest(tmp_path, "s", [{"run_id": "a", "stage": "pretrain", "job_id": "1_0"}])
    with open(rundir.manifest_path(tmp_path, "s"), "a") as f:
        f.write('{"run_id": "b", "sta')  # a writer killed mid-line
    rundir.append_manifest(tmp_path, "s", [{"run_id": "c", "stage": "pretrain", "job_id": "3_0"}])
    assert set(rundir.latest_submissions(tmp_path, "s")) == {("a", "pretrain"), ("c", "pretrain")}


def test_a_malformed_config_yaml_is_one_line_and_kept(tmp_path):
    from jobs.plan import resolve_runs
    from jobs.sweep import load_sweep

    sweep_path, runs = _sweep(tmp_path, "cfg"), tmp_path / "runs"
    run_id = resolve_runs(load_sweep(str(sweep_path)), load_profile("local"))[0].run_id
    config = runs / "cfg" / run_id / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_bytes(b"model: [unclosed\n\xff")
    proc = _cli(["submit", str(sweep_path), "--cluster", "local", "--runs", str(runs)], cwd=tmp_path)
    line = _one_error_line(proc)
    assert f"{config} is not valid YAML" in line, line
    assert config.read_bytes() == b"model: [unclosed\n\xff" and not (runs / "cfg" / "manifest.jsonl").exists()


@pytest.mark.parametrize("cache", ["[]", '{"time": "soon", "cluster": "fake", "arrays": [], "states": {}}',
                                   '{"time": 1e18, "cluster": "fake", "arrays": ["77"], "states": [1]}'])
def test_a_malformed_scheduler_cache_is_replaced_by_a_fresh_answer(tmp_path, cache):
    """The cache is the launcher's own disposable file: one it cannot read is never trusted, never fatal."""
    fake = _fake_slurm(tmp_path)
    sweep_path, runs, profile = _sweep(tmp_path, "cache", stages="[pretrain]"), tmp_path / "runs", _profile(tmp_path)
    from jobs.plan import resolve_runs
    from jobs.sweep import load_sweep

    run_id = resolve_runs(load_sweep(str(sweep_path)), load_profile(str(profile)))[0].run_id
    _seed_manifest(runs, "cache", [{"run_id": run_id, "stage": "pretrain", "job_id": "77_0", "cluster": "fake"}])
    (fake["state"] / "sacct.txt").write_text("77_0|RUNNING\n")
    (runs / "cache" / ".scheduler_cache.json").write_text(cache)
    proc = _cli(["status", str(sweep_path), "--runs", str(runs), "--cluster", str(profile)], env=fake["env"],
                cwd=tmp_path)
    assert "Traceback" not in proc.stderr and proc.returncode == 1, proc.stderr
    assert "pretrain     running 1" in proc.stdout, proc.stdout
    assert json.loads((runs / "cache" / ".scheduler_cache.json").read_text())["states"]["77_0"] == "RUNNING"


@pytest.mark.parametrize("answer", ["sacct: error: Problem talking to the database\nretry later\n",
                                    "JobID State\n77_0 RUNNING\n"])
def test_sacct_output_that_cannot_be_read_is_one_line(tmp_path, answer):
    fake = _fake_slurm(tmp_path)
    (fake["bin"] / "sacct").write_text(f"#!/bin/bash\nprintf '%s' {shlex.quote(answer)}\n")
    sweep_path, runs, profile = _sweep(tmp_path, "acct", stages="[pretrain]"), tmp_path / "runs", _profile(tmp_path)
    from jobs.plan import resolve_runs
    from jobs.sweep import load_sweep

    run_id = resolve_runs(load_sweep(str(sweep_path)), load_profile(str(profile)))[0].run_id
    _seed_manifest(runs, "acct", [{"run_id": run_id, "stage": "pretrain", "job_id": "77_0", "cluster": "fake"}])
    before = (runs / "acct" / "manifest.jsonl").read_bytes()
    proc = _cli(["status", str(sweep_path), "--runs", str(runs), "--cluster", str(profile)], env=fake["env"],
                cwd=tmp_path)
    line = _one_error_line(proc)
    assert "cannot read sacct's answer from cluster 'fake'" in line, line
    assert (runs / "acct" / "manifest.jsonl").read_bytes() == before
    assert not (runs / "acct" / ".scheduler_cache.json").exists()


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
    from jobs.stages import StageJob
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
    out = rundir.stage_dir(runs, "pre", run_id, "pretrain")
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


@pytest.mark.parametrize("kind", ["profile", "sweep"])
def test_a_profile_or_sweep_that_is_not_utf8_is_one_line(tmp_path, kind):
    bad = tmp_path / f"bin_{kind}.yaml"
    bad.write_bytes(b"name: bin\n\xff\xfe: 1\n")
    args = (["submit", str(_sweep(tmp_path)), "--cluster", str(bad)] if kind == "profile"
            else ["submit", str(bad), "--cluster", "local"])
    line = _one_error_line(_cli(args + ["--runs", str(tmp_path / "runs"), "--dry-run"], cwd=tmp_path))
    assert str(bad) in line and "is not valid YAML" in line, line


def test_a_stage_job_refused_a_busy_folder_leaves_the_holders_record_alone(tmp_path):
    """A second job on a stage folder that a live process holds is refused; it writes no 'failed' record into
    the folder, whose record belongs to the holder."""
    from jobs.config_io import load_config
    from jobs.stages import StageJob
    from mst.config import config_to_dict
    from mst.run.folder import StageFolderBusy, locked_stage_folder

    extra = {"run_id": "abc-r0", "sweep": "s", "cell": {}, "repeat": 0, "seed": 0, "cluster": "local"}
    job = StageJob("pretrain", runs_root=str(tmp_path), sweep="s", run_id="abc-r0",
                      config=config_to_dict(load_config("tiny")), extra=extra)
    job.out_dir.mkdir(parents=True)
    with locked_stage_folder(job.out_dir), pytest.raises(StageFolderBusy):
        job()
    assert rundir.result_status(job.out_dir) != "failed"
