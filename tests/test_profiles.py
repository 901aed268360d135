"""Cluster profiles: the shipped ones load and request devices the right way; bad ones fail in one line."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.config_io import yaml_names
from jobs.plan import config_overrides
from jobs.profiles import CLUSTERS_DIR, ClusterProfile, ProfileError, load_profile
from jobs.scheduler import slurm_parameters
from mst.config.codec import dotted_keys

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ["dcu128", "local", "local-dcu", "local-slurm", "local-v100", "v100x32"]


def test_shipped_profiles_load():
    assert yaml_names(CLUSTERS_DIR) == SHIPPED
    for name in SHIPPED:
        assert load_profile(name).name == name


def test_unknown_cluster_names_the_nearest(tmp_path):
    with pytest.raises(ProfileError, match=r"unknown cluster 'dcu12'; did you mean dcu128\?"):
        load_profile("dcu12")
    with pytest.raises(ProfileError, match="unknown cluster 'qq'; choose one of dcu128, local, "):
        load_profile("qq")
    with pytest.raises(ProfileError, match="cluster file .*nope.yaml does not exist"):
        load_profile(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ProfileError, match="profile .*bad.yaml line [0-9]+ is not valid YAML; fix its syntax"):
        load_profile(str(bad))


def test_dcu128_requests_dcus_by_raw_gres_never_gpus_per_node():
    p = load_profile("dcu128")
    params = slurm_parameters(p, "pretrain", "job")
    assert params["gres"] == "dcu:4"
    assert "gpus_per_node" not in params
    assert (params["nodes"], params["ntasks_per_node"]) == (32, 4)  # 128 devices, one task each
    assert params["mem"] == "0" and params["exclusive"] is True
    assert params["additional_parameters"]["signal"] == "USR2@120"
    setup = "\n".join(params["setup"])
    assert "module load" in setup and "compiler/dtk/" in setup
    assert 'export MIOPEN_USER_DB_PATH="$MST_SCRATCH/miopen-$SLURM_JOB_ID/db"' in setup
    assert 'export MIOPEN_CUSTOM_CACHE_DIR="$MST_SCRATCH/miopen-$SLURM_JOB_ID/cache"' in setup
    assert "NCCL_SOCKET_IFNAME" in p.environment.env  # RCCL reads the NCCL_* names
    assert "CUDA_VISIBLE_DEVICES" not in setup
    assert p.environment.visible_devices == "hip_per_node"
    assert set(p.environment.node_dirs) == {"MIOPEN_USER_DB_PATH", "MIOPEN_CUSTOM_CACHE_DIR"}
    # evaluation jobs take one device, still through the dcu gres
    assert slurm_parameters(p, "knn", "job")["gres"] == "dcu:1"


def test_v100x32_requests_gpus_per_node_with_nccl_env():
    p = load_profile("v100x32")
    params = slurm_parameters(p, "pretrain", "job")
    assert params["gpus_per_node"] == 8 and "gres" not in params
    assert params["nodes"] * params["ntasks_per_node"] == 32
    assert p.environment.env["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == "1"
    assert p.environment.visible_devices == "cuda_per_task"
    assert slurm_parameters(p, "linear_cls", "job")["gpus_per_node"] == 1


def test_precision_and_data_root_feed_the_config():
    assert config_overrides(load_profile("dcu128"), "folder") == {
        "train.precision": "fp16", "data.root": "/public/home/mst/datasets/imagenet"}
    assert config_overrides(load_profile("v100x32"), "fashion_mnist") == {"train.precision": "fp16"}
    assert config_overrides(load_profile("local"), "fashion_mnist")["train.precision"] == "fp32"


def _flat(obj, prefix=""):
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out.update(_flat(value, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = value
    return out


@pytest.mark.parametrize(("emulated", "real"), [("local-dcu", "dcu128"), ("local-v100", "v100x32")])
def test_emulated_profiles_share_the_request_logic(emulated, real):
    a, b = load_profile(emulated), load_profile(real)
    fa, fb = _flat(a), _flat(b)
    # what a site differs in; everything else (how devices are requested and seen) must be equal
    site = ("name", "slurm_conf", "placement.", "resources.", "downstream.", "environment.setup",
            "environment.env", "environment.python", "storage.", "limits.", "preemption.delay_s",
            "preemption.max_requeues", "accelerators.gres")
    differing = {k for k in fa if fa[k] != fb[k]}
    assert all(k.startswith(site) for k in differing), differing
    assert (a.gres("pretrain") or "").split(":")[0] == (b.gres("pretrain") or "").split(":")[0]
    for key in a.environment.node_dirs:
        assert a.environment.env[key] == b.environment.env[key]


def test_stage_jobs_ask_slurm_to_requeue_them_unless_the_profile_says_no(tmp_path):
    """Stage jobs requeue themselves after the signal; --requeue lets them where JobRequeue defaults to 0."""
    for name in ("dcu128", "v100x32", "local-dcu", "local-v100", "local-slurm"):
        for stage in ("pretrain", "knn"):
            assert slurm_parameters(load_profile(name), stage, "j")["additional_parameters"]["requeue"] is True
    off = _write(tmp_path, "norequeue", GOOD.format(name="norequeue") + "preemption: {requeue: false}\n")
    assert "requeue" not in slurm_parameters(load_profile(str(off)), "pretrain", "j")["additional_parameters"]


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


GOOD = """name: {name}
scheduler: slurm
placement: {{partition: debug}}
accelerators: {{kind: dcu, per_node: 4, request: gres, gres: "dcu:2"}}
resources: {{nodes: 1, tasks_per_node: 2}}
"""


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda t: t + "resoures: {nodes: 2}\n", "unknown key 'resoures'; valid keys: name, scheduler"),
    (lambda t: t.replace("nodes: 1,", "nodes: 1, gpus: 2,"), ("unknown key 'resources.gpus'; valid keys: "
                                                               "resources.nodes, resources.tasks_per_node")),
    (lambda t: t.replace("nodes: 1,", "nodes: two,"), "'resources.nodes' must be an integer, got 'two'"),
    (lambda t: t.replace("per_node: 4", "per_node: 0"), "accelerators.per_node is 0 for kind dcu"),
    (lambda t: t.replace("placement: {partition: debug}\n", ""), "placement.partition is missing"),
    (lambda t: t.replace("request: gres, gres: \"dcu:2\"", "request: gpus_per_node"),
     "DCUs cannot be requested with gpus_per_node"),
    (lambda t: t.replace("\"dcu:2\"", "\"dcu:4\""), "gres dcu:4 asks for a different count"),
    (lambda t: t + "preemption: {signal: KILL}\n",
     "'preemption.signal' must be one of USR1, USR2, TERM, INT, HUP, URG, got 'KILL'"),
    (lambda t: t + "preemption: {requeue: sometimes}\n", "'preemption.requeue' must be"),
])
def test_bad_profile_is_one_line(tmp_path, edit, expected):
    path = _write(tmp_path, "bad", edit(GOOD.format(name="bad")))
    with pytest.raises(ProfileError) as err:
        load_profile(str(path))
    message = str(err.value)
    assert expected in message
    assert "\n" not in message and message.startswith(f"profile {path}")


def test_good_profile_template_loads(tmp_path):
    assert load_profile(str(_write(tmp_path, "good", GOOD.format(name="good")))).gres("pretrain") == "dcu:2"


def test_valid_keys_cover_every_section():
    keys = dotted_keys(ClusterProfile)
    for key in ("placement.partition", "accelerators.gres", "resources.mem_gb", "preemption.signal",
                "environment.visible_devices", "storage.scratch", "limits.array_parallelism", "slurm_conf"):
        assert key in keys


def _fake_slurm_bin(tmp_path: Path) -> tuple[Path, Path]:
    """sbatch/srun/sinfo/sacct stand-ins that only log their calls: proves nothing reached a scheduler."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for tool in ("sbatch", "srun", "sinfo", "sacct", "squeue", "scontrol", "scancel"):
        script = bin_dir / tool
        script.write_text(f"#!/bin/sh\necho {tool} \"$@\" >> {log}\nexit 1\n")
        script.chmod(0o755)
    return bin_dir, log


@pytest.mark.parametrize("case", ["unknown", "type", "zero", "partition"])
def test_bad_profile_cli_submits_nothing(tmp_path, case):
    text = GOOD.format(name="bad")
    text = {"unknown": text + "walltime: 10\n",
            "type": text.replace("per_node: 4", "per_node: [4]"),
            "zero": text.replace("per_node: 4", "per_node: 0"),
            "partition": text.replace("placement: {partition: debug}\n", "")}[case]
    profile = _write(tmp_path, "bad", text)
    bin_dir, log = _fake_slurm_bin(tmp_path)
    runs = tmp_path / "runs"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-m", "jobs.cli.sweep", "submit", "loss_weight_smoke", "--cluster",
                           str(profile), "--runs", str(runs)], cwd=ROOT, env=env, check=False, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: profile "), proc.stderr
    assert not log.exists() and not runs.exists()
