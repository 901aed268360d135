"""Preflight (`mst-sweep check`): passes on this machine's `local` profile, names a device mismatch in one
line (a local profile asking for a GPU here; the emulated DCU and V100 clusters, whose gres are fake), and
`submit --preflight` submits nothing when the check fails."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.preflight import evaluate, evaluate_downstream, in_range, preflight_parameters, run_check
from jobs.profiles import load_profile

ROOT = Path(__file__).resolve().parent.parent
FMNIST = "/usr/share/datasets/fashion-mnist"


def _sweep(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "jobs.cli.sweep", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600, check=False)


def _profile(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\nscheduler: local\n{text}")
    return path


def test_check_passes_on_local(tmp_path):
    proc = _sweep("check", "--cluster", "local", "--runs", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "preflight of local: all checks passed" in out
    for check in ("python version", "torch version", "torchvision version", "timm version", "devices per rank",
                  "forward/backward rank 0", "run root writable", "scratch writable", "data root fashion_mnist",
                  "all-reduce"):
        assert check in out
    assert "gloo: sum 1 as expected" in out and "4 IDX files, 10 classes" in out
    assert " BAD " not in out and proc.stderr.strip() == ""
    assert not (tmp_path / "runs").exists()  # checked for writability, not created


def test_a_local_profile_asking_for_a_gpu_fails_here_in_one_line(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the mismatch cannot be shown here")
    path = _profile(tmp_path, "gpu-here", "accelerators: {kind: cuda, per_node: 1, request: none}\n"
                    f"environment: {{precision: bf16}}\nstorage: {{run_root: {tmp_path}/runs, "
                    f"data_roots: {{fashion_mnist: {FMNIST}}}}}\n")
    proc = _sweep("check", "--cluster", str(path))
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("problem: profile asks 1 cuda per node; the node ") and \
        lines[0].endswith(" shows 0 devices")
    assert lines[-1] == "error: preflight of gpu-here found 1 problem(s)" and len(lines) == 2
    assert "Traceback" not in proc.stderr
    assert "devices per rank" in proc.stdout and " BAD " in proc.stdout


def test_storage_problems_are_named(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    path = _profile(tmp_path, "bad-storage", f"storage: {{run_root: {blocker}/runs, scratch: {tmp_path}, "
                    f"data_roots: {{fashion_mnist: {tmp_path}/nowhere, folder: {tmp_path}/images}}}}\n")
    (tmp_path / "images" / "train" / "cat").mkdir(parents=True)
    (tmp_path / "images" / "train" / "dog").mkdir()
    printed: list[str] = []
    problems = run_check(load_profile(str(path)), blocker / "runs", out=printed.append)
    assert len(problems) == 2
    assert "run root " in problems[0] and "is not writable from the node" in problems[0]
    assert f"data root fashion_mnist {tmp_path}/nowhere does not exist" in problems[1]
    assert "train 2 classes" in printed[-1]  # the image folder's class count is in the table


def test_the_job_has_the_node_shape_of_pretraining_on_two_nodes_at_most():
    dcu = preflight_parameters(load_profile("dcu128"))
    assert (dcu["nodes"], dcu["ntasks_per_node"], dcu["gres"], dcu["time"]) == (2, 4, "dcu:4", 10)
    assert dcu["exclusive"] is True and "gpus_per_node" not in dcu
    assert "requeue" not in dcu["additional_parameters"]  # the probe saves nothing to come back to
    v100 = preflight_parameters(load_profile("v100x32"))
    assert (v100["nodes"], v100["ntasks_per_node"], v100["gpus_per_node"]) == (2, 8, 8)
    one = preflight_parameters(load_profile("local-dcu"))
    assert (one["nodes"], one["ntasks_per_node"], one["gres"]) == (1, 2, "dcu:2")


# ---------------------------------------------------------------------------- evaluation of reports


def _report(host: str, rank: int, count: int, build: str = "rocm", torch_version: str = "2.1.0+das1.0",
            reduced: float = 3.0) -> dict:
    return {
        "host": host, "rank": rank, "local_rank": rank % 2, "world_size": 2, "local_world_size": 1,
        "versions": {"python": "3.10.12", "torch": torch_version, "torchvision": "0.16.0", "timm": "1.0.31"},
        "devices": {"build": build, "build_version": "5.7", "count": count,
                    "names": ["DCU Z100"] * count, "error": None},
        "step": {"device": "cuda:0" if count else "cpu", "precision": "fp16" if count else "fp32", "ok": True,
                 "loss": 0.5, "ms": 3.0, "error": None},
        "all_reduce": {"backend": "nccl", "wanted": "nccl", "world_size": 2, "ok": reduced == 3.0,
                       "value": reduced, "expected": 3.0, "error": None},
        "data_roots": [], "scratch": {"path": "/tmp", "exists": True, "ok": True, "free_gib": 50.0, "detail": ""},
        "run_root": {"path": "/runs", "exists": True, "ok": True, "free_gib": 900.0, "detail": ""},
    }


def test_reports_that_match_dcu128_pass():
    rows, problems = evaluate(load_profile("dcu128"), [_report("n1", 0, 4), _report("n2", 1, 4)], 4)
    assert problems == []
    assert any(r.check == "all-reduce" and r.where == "2 ranks, 2 nodes" and r.ok for r in rows)


def test_device_build_version_and_collective_mismatches_are_one_line_each():
    profile = load_profile("dcu128")
    reports = [_report("n1", 0, 0, build="cuda", torch_version="2.0.1", reduced=2.0),
               _report("n2", 1, 0, build="cuda", torch_version="2.0.1", reduced=2.0)]
    _, problems = evaluate(profile, reports, 4)
    assert "profile asks 4 dcu per node; the node n1 shows 0 devices" in problems
    assert "profile asks 4 dcu per node; the node n2 shows 0 devices" in problems
    assert any(p.startswith("n1: torch 2.0.1 is outside the supported range >=2.1") for p in problems)
    assert any(p.startswith("n1: profile asks dcu devices but torch 2.0.1 is a cuda build") for p in problems)
    assert sum(p.startswith("all-reduce over nccl across 2 ranks on 2 nodes failed") for p in problems) == 1
    assert len(problems) == len(set(problems)) == 7


def test_too_few_devices_per_rank():
    _, problems = evaluate(load_profile("dcu128"), [_report("n1", 0, 2), _report("n1", 1, 2)], 4)
    assert problems == ["n1: rank 0 sees 2 devices; visible_devices hip_per_node should leave it 4",
                        "n1: rank 1 sees 2 devices; visible_devices hip_per_node should leave it 4"]


@pytest.mark.parametrize(("version", "spec", "ok"), [
    ("2.1.2+cu121", ">=2.1", True), ("2.0.1", ">=2.1", False), ("2.6.0a0+git1234", ">=2.1", True),
    ("0.16.0", ">=0.16", True), ("1.0.31", ">=1.0.23,<1.1", True), ("1.1.0", ">=1.0.23,<1.1", False),
    ("1.0.20", ">=1.0.23,<1.1", False), ("3.11.7", ">=3.10", True), ("2.14.1", "==2.14.1", True),
])
def test_version_ranges(version, spec, ok):
    assert in_range(version, spec) is ok


def _downstream(host: str, before: dict, variable: str | None, mask: str | None, count: int = 1) -> dict:
    entries = (mask or "").split(",")
    return {"host": host, "rank": 0, "local_rank": 0, "masks_before": before,
            "choice": {"variable": variable, "mask": mask, "written_by_job": variable not in before,
                       "index": 0, "physical": entries[0] or None},
            "devices": {"build": "cuda", "build_version": "12.6", "count": count, "names": [], "error": None}}


def test_downstream_shape_needs_a_mask_naming_its_own_device():
    v100 = load_profile("v100x32")
    rows, problems = evaluate_downstream(v100, [_downstream("g1", {"CUDA_VISIBLE_DEVICES": "5"},
                                                            "CUDA_VISIBLE_DEVICES", "5")])
    assert problems == [] and rows[0].found == "CUDA_VISIBLE_DEVICES=5 from Slurm or the site; rank 0 uses 5"
    _, problems = evaluate_downstream(v100, [_downstream("g1", {"CUDA_VISIBLE_DEVICES": "0,1,2"},
                                                         "CUDA_VISIBLE_DEVICES", "0,1,2", count=3)])
    assert problems == [("g1: a 1-device downstream job sees 3 devices (CUDA_VISIBLE_DEVICES=0,1,2); it must see "
                        "its own only: request its devices (accelerators.request) or set downstream.exclusive: true")]
    _, problems = evaluate_downstream(v100, [_downstream("g1", {"CUDA_VISIBLE_DEVICES": ""},
                                                         "CUDA_VISIBLE_DEVICES", "", count=0)])
    assert problems[0].startswith("g1: a 1-device downstream job sees no device (CUDA_VISIBLE_DEVICES is empty)")
    # a custom gres (dcu): Slurm sets no mask; the job's own HIP_VISIBLE_DEVICES=0 would be device 0 always
    dcu = load_profile("dcu128")
    rows, problems = evaluate_downstream(dcu, [_downstream("d1", {}, "HIP_VISIBLE_DEVICES", "0", count=1)])
    assert problems == [("d1: a 1-device downstream job gets no visible-device mask from Slurm or the site (dcu:1), "
                        "so on a shared node it uses device 0 whatever Slurm allocated; set downstream.exclusive: "
                        "true in the profile (a whole node per job), or have the site's gres.conf or cgroups set "
                        "the mask")]
    assert not rows[0].ok and "the job wrote HIP_VISIBLE_DEVICES=0" in rows[0].found
    exclusive = dataclasses.replace(dcu, downstream=dataclasses.replace(dcu.downstream, exclusive=True))
    assert evaluate_downstream(exclusive, [_downstream("d1", {}, "HIP_VISIBLE_DEVICES", "0")])[1] == []
    site = evaluate_downstream(dcu, [_downstream("d1", {"HIP_VISIBLE_DEVICES": "2"}, "HIP_VISIBLE_DEVICES", "2")])
    assert site[1] == []


def test_the_downstream_job_has_one_device_and_no_requeue():
    down = preflight_parameters(load_profile("dcu128"), "downstream")
    assert (down["nodes"], down["ntasks_per_node"], down["gres"], down["time"]) == (1, 1, "dcu:1", 10)
    assert "exclusive" not in down and "requeue" not in down["additional_parameters"]


# ---------------------------------------------------------------------------- the local Slurm clusters


@pytest.mark.slurm
@pytest.mark.parametrize(("cluster", "line"), [
    ("local-dcu", "profile asks 4 dcu per node; the node "),
    ("local-v100", "profile asks 8 cuda per node; the node "),
])
def test_emulated_clusters_fail_the_device_check(tmp_path, slurm_clusters, cluster, line):
    proc = _sweep("check", "--cluster", cluster, "--runs", str(tmp_path / "runs"), "--wait", "300")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    problems = [ln for ln in proc.stderr.splitlines() if ln.startswith("problem: ")]
    assert any(p.startswith("problem: " + line) and p.endswith(" shows 0 devices") for p in problems), problems
    assert "Traceback" not in proc.stderr
    assert "preflight job " in proc.stdout and "all-reduce" in proc.stdout  # the job ran and reported
    assert "2 ranks, 1 node" in proc.stdout and "gloo (nccl needs devices): sum 3 as expected" in proc.stdout
    # the downstream shape ran too: Slurm's gpu gres sets a mask, the custom dcu gres none
    assert "(downstream shape): 1 node(s) x 1 task(s)" in proc.stdout
    no_mask = [p for p in problems if "downstream job gets no visible-device mask" in p]
    if cluster == "local-dcu":
        assert len(no_mask) == 1 and "set downstream.exclusive: true" in no_mask[0], problems
    else:
        assert no_mask == [] and "CUDA_VISIBLE_DEVICES=" in proc.stdout, problems


@pytest.mark.slurm
def test_submit_with_preflight_submits_nothing_when_it_fails(tmp_path, slurm_clusters):
    runs = tmp_path / "runs"
    proc = _sweep("submit", "loss_weight_smoke", "--cluster", "local-dcu", "--runs", str(runs), "--preflight")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == ("error: nothing submitted: fix the problems above, "
                                                    "then submit again")
    assert "Traceback" not in proc.stderr
    assert not list(runs.glob("**/manifest.jsonl")) and not list(runs.glob("**/config.yaml"))
