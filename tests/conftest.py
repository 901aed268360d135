"""Shared fixtures. Slurm: the local clusters of clusters/local-slurm/start.sh (cluster dcu = the default
SLURM_CONF, cluster v100 = /etc/slurm/v100/slurm.conf). Tests marked `slurm` skip, with the reason, when no
cluster answers, unless MST_REQUIRE_SLURM=1 (CI), where they fail instead."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

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
