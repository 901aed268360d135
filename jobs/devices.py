"""Which device a rank uses: inside the mask Slurm (or the site) set, by local rank; a mask is written only
where none exists.

Slurm sets CUDA_VISIBLE_DEVICES (and ROCR_VISIBLE_DEVICES) to the devices it allocated for a `gpu` gres, e.g.
"5" for a 1-GPU job placed on GPU 5 of a shared node. Rewriting it to the local rank ("0") would put that job
on a device another job holds, so a rank keeps the mask and takes entry `local_rank` of it (the torch side,
mst.run.runtime.pick_device, sets device `local_rank % device_count`, the same entry). A custom gres (`dcu`)
gets no mask from Slurm: there the job lists the node's first devices, one per local rank, as before.

Standard library only: the login side (preflight evaluation) imports it without torch.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

MASK_VARIABLES = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")
# the mask a rank selects in, by the profile's environment.visible_devices, most specific first
PREFERRED = {"cuda_per_task": ("CUDA_VISIBLE_DEVICES",),
             "hip_per_node": ("HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"),
             "none": MASK_VARIABLES}


@dataclass(frozen=True)
class DeviceChoice:
    """The device of one rank, as the record and the preflight report it."""

    variable: str | None
    """The mask variable the rank selected in (None: no mask, e.g. a CPU job)."""
    mask: str | None
    """Its value, e.g. '5' or '0,1' (an empty string: no device at all)."""
    written_by_job: bool
    """True when no mask existed and the job wrote it; False when Slurm or the site had set it."""
    index: int | None
    """The device index torch uses inside the mask (local rank modulo the mask's length)."""
    physical: str | None
    """The mask's entry at that index: the device as the node numbers it (an index or a UUID)."""


def mask_entries(mask: str | None) -> list[str]:
    """The devices a visible-device mask names: ['0', '1'] of '0,1', [] of an empty or missing mask."""
    return [e.strip() for e in (mask or "").split(",") if e.strip()]


def existing_masks(env: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """The visible-device variables that are set, {name: value}."""
    env = os.environ if env is None else env
    return {name: env[name] for name in MASK_VARIABLES if name in env}


def select_device(policy: str, local_rank: int, local_world_size: int,
                  env: MutableMapping[str, str] | None = None) -> DeviceChoice:
    """Pick this rank's device inside the existing mask, or write the policy's mask where none exists.

    `policy` is environment.visible_devices: cuda_per_task writes CUDA_VISIBLE_DEVICES=<local rank>,
    hip_per_node writes HIP_VISIBLE_DEVICES=0..<ranks on the node - 1>, none writes nothing.
    """
    env = os.environ if env is None else env
    found = next((name for name in PREFERRED[policy] if name in env), None)
    written = found is None
    if written and policy == "cuda_per_task":
        found = "CUDA_VISIBLE_DEVICES"
        env[found] = str(local_rank)
    elif written and policy == "hip_per_node":
        # no CUDA mask beside it: HIP, ROCR and CUDA masks combined can leave a rank with zero devices
        found = "HIP_VISIBLE_DEVICES"
        env[found] = ",".join(str(i) for i in range(local_world_size))
    elif written:  # policy none writes no mask
        return DeviceChoice(None, None, False, None, None)
    entries = mask_entries(env[found])
    index = local_rank % len(entries) if entries else None
    return DeviceChoice(found, env[found], written, index, None if index is None else entries[index])


def export_ranks(policy: str) -> tuple[Any, DeviceChoice]:
    """Under Slurm: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT exported from Slurm's variables as
    torch's env:// reads them (submitit's environment, returned), and this rank's device by `policy`."""
    import submitit  # imported here: the login side reads this module without the job's packages

    env = submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    return env, select_device(policy, env.local_rank, env.local_world_size)


def node_devices(choice: DeviceChoice, env: MutableMapping[str, str] | None = None) -> dict[str, str | None]:
    """{global rank: physical device} for every task of this node: the tasks of one Slurm step on a node share
    its mask and each takes the entry of its local rank. Ranks on other nodes say theirs in their own log."""
    env = os.environ if env is None else env
    try:  # Slurm's SLURM_GTIDS: the global ranks of this node's tasks in local-rank order
        ranks = [int(x) for x in env.get("SLURM_GTIDS", "").split(",") if x.strip()]
    except ValueError:
        ranks = []
    entries = mask_entries(choice.mask)
    if choice.written_by_job and choice.variable == "CUDA_VISIBLE_DEVICES":
        return {str(r): str(local) for local, r in enumerate(ranks)}  # each task wrote its own local rank
    return {str(r): (entries[local % len(entries)] if entries else None) for local, r in enumerate(ranks)}
