"""Shared fixtures. Slurm: the local clusters of clusters/local-slurm/start.sh (cluster dcu = the default
SLURM_CONF, cluster v100 = /etc/slurm/v100/slurm.conf). Tests marked `slurm` skip, with the reason, when no
cluster answers, unless MST_REQUIRE_SLURM=1 (CI), where they fail instead."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from jobs import rundir

SLURM_CONFS = {"dcu": "/etc/slurm/slurm.conf", "v100": "/etc/slurm/v100/slurm.conf"}


@pytest.fixture(autouse=True)
def _index_cache_in_tmp(tmp_path_factory, monkeypatch):
    """Folder indexes (mst.data.index) go to a temporary folder, never to the user's cache."""
    monkeypatch.setenv("MST_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "mst-cache"))


@pytest.fixture
def one_thread():
    """One torch thread for the test: on tiny tensors intra-op threads only add contention on a shared machine
    (30x slower measured). Modules opt in with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _cluster_answers(conf: str) -> str | None:
    """None when sinfo and sacct answer for this SLURM_CONF, else why not."""
    if shutil.which("sinfo") is None:
        return "sinfo not found (Slurm is not installed)"
    if not Path(conf).is_file():
        return f"{conf} does not exist"
    env = {**os.environ, "SLURM_CONF": conf}
    for cmd in (["sinfo", "-h", "-o", "%T"], ["sacct", "-n", "-X", "-j", "1"]):
        try:
            proc = subprocess.run(cmd, env=env, check=False, capture_output=True, text=True, timeout=20)
        except subprocess.TimeoutExpired:
            return f"{cmd[0]} timed out for {conf}"
        if proc.returncode != 0:
            return f"{cmd[0]} failed for {conf}: {(proc.stderr.strip().splitlines() or ['?'])[-1]}"
    return None


@pytest.fixture(scope="session")
def slurm_clusters() -> dict[str, str]:
    """The two local clusters, {'dcu': conf, 'v100': conf}; skips (or fails under MST_REQUIRE_SLURM=1)."""
    problems = [why for why in (_cluster_answers(c) for c in SLURM_CONFS.values()) if why]
    if problems:
        message = (f"no local Slurm cluster answers ({problems[0]}); start them as root with "
                   "`bash clusters/local-slurm/start.sh`")
        if os.environ.get("MST_REQUIRE_SLURM") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return dict(SLURM_CONFS)


@pytest.fixture
def slurm_sweep(tmp_path, slurm_clusters):
    """make(name, yaml_text) -> path of a sweep file; every job those sweeps submitted is cancelled at the end.

    Each test gets its own runs root, so submitit folders are never reused (job ids restart when the
    clusters' state is wiped, and a reused folder would return stale result pickles)."""
    made: list[Path] = []

    def make(name: str, text: str) -> Path:
        path = tmp_path / "sweeps" / f"{name}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        made.append(path)
        return path

    yield make
    for manifest in tmp_path.glob("**/manifest.jsonl"):
        lines = [json.loads(x) for x in manifest.read_text().splitlines() if x.strip()]
        by_cluster: dict[str, set[str]] = {}
        for rec in lines:
            if not str(rec["job_id"]).startswith("local"):
                by_cluster.setdefault(rec["cluster"], set()).add(str(rec["job_id"]).split("_")[0])
        for cluster, ids in by_cluster.items():
            from jobs.profiles import load_profile

            conf = load_profile(cluster).slurm_conf or SLURM_CONFS["dcu"]
            subprocess.run(["scancel", *sorted(ids)], env={**os.environ, "SLURM_CONF": conf}, check=False,
                           capture_output=True, timeout=30)


def wait_for(predicate, timeout_s: float, what: str | Callable[[], str], poll_s: float = 1.0):
    """Poll `predicate` until it returns something truthy; fail naming `what` after `timeout_s`.

    `what` may be a callable, called at the failure, to say what was last seen."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what() if callable(what) else what}")


def sacct_records(job_id: str, conf: str, since: float, duplicates: bool = False) -> list[dict[str, str]]:
    """sacct's records of a job submitted after `since` (epoch s; job ids restart when a cluster's state is
    wiped, so older jobs may share the id); with `duplicates`, every requeued incarnation too."""
    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(since - 5))
    cmd = ["sacct", "-X", "--parsable2", "-o", "JobID,State,Start,End,NodeList,AllocTRES", "-S", start,
           "-j", job_id]
    if duplicates:
        cmd.insert(1, "-D")
    out = subprocess.run(cmd, env={**os.environ, "SLURM_CONF": conf}, check=True, capture_output=True,
                         text=True, timeout=30).stdout.splitlines()
    names = out[0].split("|") if out else []
    return [dict(zip(names, line.split("|"))) for line in out[1:]]


# ------------------------------------------------------------- stand-in scheduler and the mst-sweep CLI
# (tests/test_faults_jobs.py, tests/test_faults_submission.py)

ROOT = Path(__file__).resolve().parent.parent
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


def _seed_manifest(runs: Path, sweep: str, records: list[dict]) -> None:
    rundir.append_manifest(rundir.SweepFolder(runs, sweep), records)
