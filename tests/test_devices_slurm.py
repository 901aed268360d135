"""The devices Slurm allocated, on the real local V100-like cluster (gres gpu sets CUDA_VISIBLE_DEVICES):
two 1-device jobs placed on one node at the same time keep Slurm's masks and use different devices. There is
no GPU here: what is tested is the mask each job finds and the device the job layer selects in it
(jobs.stage_job.StageJob._export_ranks), not CUDA. About 15-30 s."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import wait_for

from jobs.profiles import load_profile
from jobs.scheduler import slurm_conf_of, slurm_parameters

pytestmark = pytest.mark.slurm

# the job layer's own code on the node, holding the device a few seconds so that both jobs overlap
PROBE = """
import dataclasses, json, os, time
from jobs.stage_job import StageJob
job = StageJob("knn", runs_root="/nonexistent", sweep="s", run_id="r", config={{}}, extra={{}},
               visible_devices="cuda_per_task")
slurm_mask = os.environ.get("CUDA_VISIBLE_DEVICES")
started = time.time()
world, device = job._export_ranks()
time.sleep({hold})
print(json.dumps({{"slurm_mask": slurm_mask, "after": os.environ.get("CUDA_VISIBLE_DEVICES"), "world": world,
                  "device": dataclasses.asdict(device), "start": started, "end": time.time()}}))
"""


def test_two_one_device_jobs_on_one_node_use_different_devices(tmp_path, slurm_clusters):
    import submitit

    profile = load_profile("local-v100")
    params = slurm_parameters(profile, "knn", "mst-devices")
    assert params["gpus_per_node"] == 1 and params["ntasks_per_node"] == 1  # the downstream shape
    params["nodelist"] = "v100-n1"  # one node, shared
    with slurm_conf_of(profile):
        executor = submitit.SlurmExecutor(folder=tmp_path / "%j", python=sys.executable, max_num_timeout=0)
        executor.update_parameters(**params)
        fn = submitit.helpers.CommandFunction([sys.executable, "-c", PROBE.format(hold=8)])
        jobs = [executor.submit(fn) for _ in range(2)]
        try:
            wait_for(lambda: all(j.done() for j in jobs), 240, "both 1-device jobs to finish", poll_s=2)
            found = [json.loads(j.result().strip().splitlines()[-1]) for j in jobs]
        finally:
            for j in jobs:
                if not j.done():
                    j.cancel(check=False)
    masks = [f["slurm_mask"] for f in found]
    assert all(m is not None and len(m.split(",")) == 1 for m in masks), masks  # Slurm set one device each
    assert masks[0] != masks[1], masks
    for f in found:
        assert f["after"] == f["slurm_mask"]  # the job layer kept Slurm's mask
        assert f["device"]["physical"] == f["slurm_mask"] and f["device"]["written_by_job"] is False
    assert found[0]["device"]["physical"] != found[1]["device"]["physical"]
    assert max(f["start"] for f in found) < min(f["end"] for f in found)  # at the same time
