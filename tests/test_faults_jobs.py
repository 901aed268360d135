"""Hostile and malformed inputs against the orchestration side (jobs/, analysis/status): hostile profiles and
sweep names, containment of the runs root, torn or malformed manifests, config.yaml, scheduler caches and
sacct output, profiles and sweeps that are not UTF-8.

The scheduler is a set of stand-in commands on PATH (the process boundary; `_fake_slurm` in tests/conftest.py):
they log their calls, answer sbatch with job ids and sacct with the states a test sets. The real clusters are in
tests/test_slurm.py; faults in a submitted sweep's life (cells, chains, concurrency, preemption) in
tests/test_faults_submission.py.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import _cli, _fake_slurm, _one_error_line, _profile, _seed_manifest, _sweep

from jobs import rundir
from jobs.profiles import ProfileError, load_profile
from jobs.scheduler import setup_lines

HOSTILE = Path(__file__).resolve().parent / "fixtures" / "hostile"


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
        sweep, run_id, stage = parts
        rundir.SweepFolder(tmp_path, sweep).stage(run_id, stage)


def test_a_planted_link_cannot_take_writes_outside_the_runs_root(tmp_path):
    """A run folder that is a symlink elsewhere (a careless colleague's) is refused; nothing is written there."""
    from jobs.plan import resolve_runs
    from jobs.rundir import write_run_configs
    from jobs.sweep import load_sweep

    sweep = load_sweep(str(_sweep(tmp_path, "contain")))
    runs, outside = tmp_path / "runs", tmp_path / "outside"
    outside.mkdir()
    resolved = resolve_runs(sweep, load_profile("local"))
    (runs / "contain").mkdir(parents=True)
    (runs / "contain" / resolved[0].run_id).symlink_to(outside)
    with pytest.raises((ValueError, RuntimeError), match="outside the runs root"):  # RunFolderError, LaunchError
        write_run_configs(resolved, rundir.SweepFolder(runs, "contain"), "local")
    assert list(outside.iterdir()) == []


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
    folder = rundir.SweepFolder(tmp_path, "s")
    rundir.append_manifest(folder, [{"run_id": "a", "stage": "pretrain", "job_id": "1_0"}])
    with open(folder.manifest, "a") as f:
        f.write('{"run_id": "b", "sta')  # a writer killed mid-line
    rundir.append_manifest(folder, [{"run_id": "c", "stage": "pretrain", "job_id": "3_0"}])
    assert set(rundir.latest_submissions(folder)) == {("a", "pretrain"), ("c", "pretrain")}


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
                                   '{"time": 1e18, "cluster": "fake", "arrays": ["77"], "states": [1]}',
                                   ('{"version": 2, "time": NOW, "cluster": "fake", "arrays": ["77"], '
                                    '"states": {"77_0": "PENDING"}}')])
def test_a_malformed_scheduler_cache_is_replaced_by_a_fresh_answer(tmp_path, cache):
    """The cache is the launcher's own disposable file: one it cannot read (or of another schema version, fresh
    as it is) is never trusted, never fatal."""
    fake = _fake_slurm(tmp_path)
    sweep_path, runs, profile = _sweep(tmp_path, "cache", stages="[pretrain]"), tmp_path / "runs", _profile(tmp_path)
    from jobs.plan import resolve_runs
    from jobs.sweep import load_sweep

    run_id = resolve_runs(load_sweep(str(sweep_path)), load_profile(str(profile)))[0].run_id
    _seed_manifest(runs, "cache", [{"run_id": run_id, "stage": "pretrain", "job_id": "77_0", "cluster": "fake"}])
    (fake["state"] / "sacct.txt").write_text("77_0|RUNNING\n")
    (runs / "cache" / ".scheduler_cache.json").write_text(cache.replace("NOW", str(time.time())))
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


@pytest.mark.parametrize("kind", ["profile", "sweep"])
def test_a_profile_or_sweep_that_is_not_utf8_is_one_line(tmp_path, kind):
    bad = tmp_path / f"bin_{kind}.yaml"
    bad.write_bytes(b"name: bin\n\xff\xfe: 1\n")
    args = (["submit", str(_sweep(tmp_path)), "--cluster", str(bad)] if kind == "profile"
            else ["submit", str(bad), "--cluster", "local"])
    line = _one_error_line(_cli(args + ["--runs", str(tmp_path / "runs"), "--dry-run"], cwd=tmp_path))
    assert str(bad) in line and "is not valid YAML" in line, line
