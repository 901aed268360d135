"""The researcher's path on a cluster, against the real local V100-like Slurm cluster: the login-node commands
run by an unprivileged user, from a second Python environment that stands for the site's env (not `.venv`;
tests/helpers/site_env.py), with the Fashion-MNIST package out of the login side's reach.

    make sweep SWEEP=... CLUSTER=...      (the site env active: python3 on PATH is its python)
    make status SWEEP=... CLUSTER=...
    a preemption mid-pre-training (USR2: the job saves, requeues itself and resumes)
    mst-sweep resubmit SWEEP --cluster ... --dry-run, then make resubmit (a k-NN job lost to a node failure)
    mst-report tables --cluster ...

The user (MST_TEST_USER, default `mstuser`; .ci/run creates it) must be able to read the checkout. The shipped
local profiles keep their runs root in ./runs, inside the checkout, which that user cannot write: the test
passes a copy of local-v100 (`user-v100`) whose storage.run_root is a folder the user owns, and no --runs
anywhere, so every command finds the records through the profile. `FMNIST=/nonexistent/...` on the make
command lines makes any target that still needed the data set fail (the jobs on the nodes read the real one).

Skips, saying why, when the user or the clusters are missing, unless MST_REQUIRE_SLURM=1 (CI): then it fails.
About 100-150 s on the 2-core development machine.
"""

from __future__ import annotations

import csv
import json
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import wait_for
from helpers.site_env import make_site_env

from jobs import rundir
from mst.atomic import read_json
from mst.inputs import read_jsonl

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
USER = os.environ.get("MST_TEST_USER", "mstuser")
SWEEP = """name: userpath
preset: tiny
repeats: 1
base_seed: 0
stages: [pretrain, knn]
overrides: {train.epochs: 3}
grid: {loss.restore_weight: [0.6]}
table:
  id: U1
  title: "The user's path"
  row_header: [Restore weight]
  x_axis: loss.restore_weight
  columns:
    top1: {label: k-NN (%), sources: [knn/top1@10]}
  rows:
    - {label: "0.6", cell: {loss.restore_weight: 0.6}, paper: {top1: 73.9}}
"""


def _unavailable(why: str) -> None:
    message = f"{why}; create the user as root (`useradd --create-home {USER}`, as .ci/run does) or set MST_TEST_USER"
    if os.environ.get("MST_REQUIRE_SLURM") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def site_env(slurm_clusters):
    """(user, bin folder of the site env); skips or fails (MST_REQUIRE_SLURM=1) when it cannot be made."""
    try:
        pwd.getpwnam(USER)
    except KeyError:
        _unavailable(f"user {USER} does not exist")
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        _unavailable("running commands as another user needs root and runuser")
    probe = subprocess.run(["runuser", "-u", USER, "--", "test", "-r", str(REPO / "Makefile")], check=False)
    if probe.returncode != 0:
        _unavailable(f"user {USER} cannot read the checkout {REPO}")
    try:
        top, bin_dir = make_site_env(USER)
    except RuntimeError as err:
        _unavailable(str(err))
    yield USER, bin_dir
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def user_home(site_env):
    """A folder the user owns for the runs root, the sweep file, the profile copy and its caches."""
    user = site_env[0]
    top = Path(tempfile.mkdtemp(prefix="mst-user-path-"))
    top.chmod(0o755)
    shutil.chown(top, user, user)
    yield top
    for manifest in top.glob("**/manifest.jsonl"):  # nothing left in the queue
        ids = {str(json.loads(x)["job_id"]).split("_")[0] for x in manifest.read_text().splitlines() if x.strip()}
        subprocess.run(["scancel", *sorted(ids)], env={**os.environ, "SLURM_CONF": "/etc/slurm/v100/slurm.conf"},
                       check=False, capture_output=True, timeout=30)
    shutil.rmtree(top, ignore_errors=True)


def _as_user(user: str, bin_dir: Path, home: Path, *cmd: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """A login shell's command: the site env active (its bin first on PATH), nothing of root's env."""
    env = {"PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin", "VIRTUAL_ENV": str(bin_dir.parent),
           "HOME": str(home), "USER": user, "LOGNAME": user, "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1",
           "MST_CACHE_DIR": str(home / "cache")}
    return subprocess.run(["runuser", "-u", user, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()), *cmd],
                          cwd=REPO, check=False, capture_output=True, text=True, timeout=timeout)


def _ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, (proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


def _cell_row(table_csv: str, table: str, sweep: str) -> dict | None:
    """The CSV row of the table's one cell (restore weight 0.6), not a baseline row."""
    rows = csv.DictReader(table_csv.splitlines())
    return next((r for r in rows if r["table"] == table and r["sweep"] == sweep and r["Restore weight"] == "0.6"
                 and not r["baseline"]), None)


def test_the_user_path_from_a_login_node(site_env, user_home):
    user, bin_dir = site_env
    uid = pwd.getpwnam(user).pw_uid
    runs = user_home / "runs"
    profile = user_home / "user-v100.yaml"
    text = (REPO / "clusters" / "local-v100.yaml").read_text()
    profile.write_text(text.replace("name: local-v100", "name: user-v100").replace("run_root: runs",
                                                                                  f"run_root: {runs}"))
    sweep = user_home / "userpath.yaml"
    sweep.write_text(SWEEP)
    for path in (profile, sweep):
        shutil.chown(path, user, user)

    def run(*cmd: str) -> subprocess.CompletedProcess:
        return _as_user(user, bin_dir, user_home, *cmd)

    no_data = "FMNIST=/nonexistent/train-images-idx3-ubyte.gz"  # a target that needed the data set fails
    out = _ok(run("make", "--no-print-directory", "sweep", f"SWEEP={sweep}", f"CLUSTER={profile}", no_data))
    assert "submitted pretrain x 1" in out and "submitted knn x 1" in out, out
    assert "'python3' -m jobs.cli.sweep submit" in out and ".venv" not in out  # python3 on PATH: the active env's
    (pre,) = [r for r in rundir.read_manifest(rundir.SweepFolder(runs, "userpath")) if r["stage"] == "pretrain"]
    (knn,) = [r for r in rundir.read_manifest(rundir.SweepFolder(runs, "userpath")) if r["stage"] == "knn"]
    assert pre["cluster"] == "user-v100"

    out = _ok(run("make", "--no-print-directory", "status", f"SWEEP={sweep}", f"CLUSTER={profile}", no_data))
    assert "pretrain" in out and "knn" in out, out

    # a preemption mid-pre-training: the profile's signal; the job saves, requeues itself, resumes
    stage = rundir.SweepFolder(runs, "userpath").stage(pre["run_id"], "pretrain")

    def last_step() -> int:
        return max((r.get("step", 0) for r in read_jsonl(stage / "metrics.jsonl")), default=0)

    def log() -> str:
        logs = sorted((stage / "slurm" / pre["job_id"]).glob("*_0_log.out")) if (stage / "slurm").exists() else []
        return logs[0].read_text() if logs else ""

    wait_for(lambda: last_step() >= 2, 300, "the pre-training to be running")
    scancel = ("env", "SLURM_CONF=/etc/slurm/v100/slurm.conf", "scancel")  # the user's own scancel, that cluster
    _ok(run(*scancel, "--signal=USR2", pre["job_id"]))
    wait_for(lambda: log().count("Starting with JobEnvironment") >= 2, 300, "the requeued pre-training to restart")
    assert "requeueing" in log()

    # a node failure takes the waiting k-NN job: resubmit lists it with the reason, then sends it alone
    _ok(run(*scancel, knn["job_id"]))
    manifest = (runs / "userpath" / "manifest.jsonl").read_text()
    seen: list[str] = []

    def listed() -> bool:
        proc = run("mst-sweep", "resubmit", str(sweep), "--cluster", str(profile), "--dry-run")
        seen[:] = [_ok(proc)]
        return "would resubmit knn " in seen[0] and ": cancelled" in seen[0]

    wait_for(listed, 90, lambda: f"resubmit --dry-run to list the cancelled k-NN; last: {seen}", poll_s=3)
    assert "would resubmit pretrain" not in seen[0]  # requeued, in flight: not resubmitted
    assert (runs / "userpath" / "manifest.jsonl").read_text() == manifest  # the dry run submitted nothing
    out = _ok(run("make", "--no-print-directory", "resubmit", f"SWEEP={sweep}", f"CLUSTER={profile}", no_data))
    assert "submitted knn x 1" in out and "submitted pretrain" not in out, out

    def finished() -> bool:
        results = [read_json(rundir.SweepFolder(runs, "userpath").stage(pre["run_id"], s) / "result.json")
                   for s in ("pretrain", "knn")]
        failed = [r for r in results if r and r.get("status") == "failed"]
        assert not failed, failed[0].get("error")
        return all(r and r.get("status") == "done" for r in results)

    wait_for(finished, 600, "the pre-training and the resubmitted k-NN to finish", poll_s=3)
    done = read_json(stage / "result.json")
    assert done["job_ids"] == [pre["job_id"]] and done["metrics"]["steps"] == 24  # one job, requeued, resumed
    assert (stage / "result.json").stat().st_uid == uid  # the jobs ran as the user
    assert done["device_mask"]["variable"] == "CUDA_VISIBLE_DEVICES" and not done["device_mask"]["written_by_job"]

    table = _ok(run("mst-report", "tables", "--cluster", str(profile), "--sweep", str(sweep), "--format", "csv"))
    row = _cell_row(table, "U1", "userpath")
    knn_top1 = read_json(rundir.SweepFolder(runs, "userpath").stage(pre["run_id"], "knn") / "result.json")["metrics"]["top1@10"]
    assert row is not None and row["n"] == "1", table
    assert float(row["mean"]) == pytest.approx(knn_top1), table  # the cell is the k-NN record's

    # a second sweep that needs the same pre-training: no second pre-training, its table fills from the pool
    second = user_home / "userpath2.yaml"
    second.write_text(SWEEP.replace("name: userpath", "name: userpath2").replace("id: U1", "id: U2"))
    shutil.chown(second, user, user)
    out = _ok(run("make", "--no-print-directory", "sweep", f"SWEEP={second}", f"CLUSTER={profile}", no_data))
    assert "1 pooled pre-trainings, 0 new, 1 shared" in out and "submitted pretrain" not in out, out
    assert "submitted knn x 1" in out, out
    assert not [r for r in rundir.read_manifest(rundir.SweepFolder(runs, "userpath2")) if r["stage"] == "pretrain"]

    def second_done() -> bool:
        result = read_json(rundir.SweepFolder(runs, "userpath2").stage(pre["run_id"], "knn") / "result.json")
        assert not (result and result.get("status") == "failed"), result
        return bool(result and result.get("status") == "done")

    wait_for(second_done, 300, "the second sweep's k-NN on the shared pre-training", poll_s=3)
    assert read_json(rundir.SweepFolder(runs, "userpath2").stage(pre["run_id"], "pretrain") / "result.json") == done
    table = _ok(run("mst-report", "tables", "--cluster", str(profile), "--sweep", str(second), "--format", "csv"))
    row = _cell_row(table, "U2", "userpath2")
    assert row is not None and row["n"] == "1" and float(row["mean"]) == pytest.approx(knn_top1), table
