"""jobs.devices: a rank takes its device inside the mask Slurm or the site set; a mask only where none is."""

from __future__ import annotations

import pytest

from jobs.devices import node_devices, select_device


def test_a_slurm_mask_is_kept_and_the_rank_takes_its_entry():
    # a 1-GPU job that Slurm placed on GPU 5 of a shared node: it uses GPU 5, never GPU 0
    env = {"CUDA_VISIBLE_DEVICES": "5", "ROCR_VISIBLE_DEVICES": "5", "SLURM_GTIDS": "0"}
    choice = select_device("cuda_per_task", 0, 1, env)
    assert env["CUDA_VISIBLE_DEVICES"] == "5"
    assert (choice.variable, choice.index, choice.physical, choice.written_by_job) == \
        ("CUDA_VISIBLE_DEVICES", 0, "5", False)
    assert node_devices(choice, env) == {"0": "5"}
    # two tasks of one step share the node's mask; each takes the entry of its local rank
    env = {"CUDA_VISIBLE_DEVICES": "2,6", "SLURM_GTIDS": "4,5"}
    assert select_device("cuda_per_task", 1, 2, env).physical == "6"
    assert env["CUDA_VISIBLE_DEVICES"] == "2,6"
    assert node_devices(select_device("cuda_per_task", 0, 2, env), env) == {"4": "2", "5": "6"}


@pytest.mark.parametrize(("policy", "variable", "value", "physical"), [
    ("cuda_per_task", "CUDA_VISIBLE_DEVICES", "1", "1"),
    ("hip_per_node", "HIP_VISIBLE_DEVICES", "0,1,2,3", "1"),
])
def test_without_a_mask_the_policy_writes_one(policy, variable, value, physical):
    env: dict[str, str] = {"SLURM_GTIDS": "0,1,2,3"}
    choice = select_device(policy, 1, 4, env)
    assert env == {"SLURM_GTIDS": "0,1,2,3", variable: value}  # and no other mask beside it
    assert (choice.variable, choice.physical, choice.written_by_job) == (variable, physical, True)
    assert node_devices(choice, env) == {"0": "0", "1": "1", "2": "2", "3": "3"}


def test_a_site_mask_on_dcu_nodes_is_kept_and_cpu_jobs_have_none():
    env = {"HIP_VISIBLE_DEVICES": "3", "SLURM_GTIDS": "0"}
    choice = select_device("hip_per_node", 0, 1, env)
    assert (choice.physical, choice.written_by_job, env["HIP_VISIBLE_DEVICES"]) == ("3", False, "3")
    assert select_device("hip_per_node", 0, 1, {"ROCR_VISIBLE_DEVICES": "GPU-ab"}).physical == "GPU-ab"
    none = select_device("none", 0, 1, {})
    assert (none.variable, none.physical) == (None, None)
    empty = select_device("cuda_per_task", 0, 1, {"CUDA_VISIBLE_DEVICES": ""})
    assert (empty.variable, empty.index, empty.physical) == ("CUDA_VISIBLE_DEVICES", None, None)
