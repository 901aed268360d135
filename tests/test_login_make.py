"""The Makefile's login-node commands on a Slurm profile: the site's Python, no .venv build, no data set, no
root; what that Python lacks is one line. (The whole path against a real cluster: tests/test_user_path.py.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def make(*args: str) -> subprocess.CompletedProcess:
    # FMNIST pointed nowhere: a target that still needed the data set would fail here
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    return subprocess.run(["make", "--no-print-directory", "-n", *args, "FMNIST=/nonexistent/fmnist.gz"],
                          cwd=REPO, env=env, check=False, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("cluster", ["dcu128", "local-v100", "local-dcu"])
def test_slurm_profiles_run_the_login_commands_with_the_given_python_only(cluster):
    py = sys.executable  # an env where the package is installed
    for goal, command in (("sweep", f"-m jobs.cli.sweep submit loss_weight --cluster {cluster}"),
                          ("status", f"-m jobs.cli.sweep status loss_weight --cluster {cluster}"),
                          ("report", f"-m analysis.cli tables --cluster {cluster}"),
                          ("resubmit", f"-m jobs.cli.sweep resubmit loss_weight --cluster {cluster}"),
                          ("cancel", f"-m jobs.cli.sweep cancel loss_weight --cluster {cluster}")):
        out = make(goal, f"CLUSTER={cluster}", f"MST_PY={py}")
        assert out.returncode == 0, out.stderr
        tail = " || [ $? = 1 ]" if goal == "status" else ""  # status: "not all done yet" is no failure
        assert out.stdout.splitlines() == [f"'{py}' {command}{tail}"]  # no venv, no data, no --runs
    out = make("resubmit", f"CLUSTER={cluster}", f"PY={py}", "RUNS=/scratch/r", "DRY_RUN=1", "BUDGET=smoke")
    assert out.stdout.splitlines() == [(f"'{py}' -m jobs.cli.sweep resubmit loss_weight --budget smoke "
                                       f"--cluster {cluster} --runs /scratch/r --dry-run")]


def test_a_python_without_the_package_is_one_line_with_the_fix(tmp_path):
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    out = make("sweep", "CLUSTER=dcu128", f"MST_PY={bare}/bin/python")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("Makefile:"), out.stderr
    assert (f"*** error: the mst-toolkit package is not installed in {bare}/bin/python; install it in the "
            "site's env") in out.stderr and "set MST_PY" in out.stderr
    out = make("status", "CLUSTER=v100x32", "MST_PY=/nonexistent/bin/python")
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "error: no Python '/nonexistent/bin/python' here; activate the site's env" in out.stderr


def test_cluster_local_keeps_the_venv_and_the_runs_folder():
    out = make("--always-make", "demo")  # as on a fresh clone, whether or not .venv is already up to date
    assert "-m venv .venv" in out.stdout and "pip install -q -c requirements/lock.txt" in out.stdout
    lines = out.stdout.splitlines()
    assert ".venv/bin/mst-sweep submit loss_weight --budget smoke --cluster local" in lines
    assert ".venv/bin/mst-report tables --cluster local --sweep loss_weight --budget smoke" in lines
    assert "fashion-mnist" in make("status").stdout  # local: setup (venv and data) as before
