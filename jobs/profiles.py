"""Cluster profiles (`clusters/*.yaml`): typed and validated.

A profile says where jobs run and how they ask for devices; it never changes what a job computes, except
for `environment.precision` (the hardware decides fp16 vs bf16) and `storage.data_roots` (where a data set
lives on that site). jobs.scheduler.slurm_parameters is the one place a profile becomes submitit parameters;
jobs.plan.resolve_runs the one place it changes a run's config.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from jobs.config_io import check_name_is_stem, read_yaml, resolve_named_yaml
from jobs.rundir import SAFE_NAME
from jobs.shellsafe import ENV_NAME, control_character
from mst.config.codec import decode
from mst.config.errors import ConfigError
from mst.echo import brief
from mst.stages import stages_with_shape

CLUSTERS_DIR = Path(__file__).resolve().parent.parent / "clusters"
STAGES_WITH_PRETRAIN_SHAPE = stages_with_shape("pretrain")  # the rest take the downstream shape


class ProfileError(ValueError):
    """A bad profile. The message is one line: what is wrong and how to fix it."""


@dataclass(frozen=True)
class Placement:
    partition: str | None = None
    """Slurm partition (site-specific); required for scheduler slurm. Letters, digits, . _ - (commas
    separate a list)."""
    account: str | None = None
    """Slurm account charged for the jobs (--account), if the site needs one. Letters, digits, . _ -."""
    qos: str | None = None
    """Quality of service (--qos), if the site uses them. Letters, digits, . _ -."""
    constraint: str | None = None
    """Node features to require (--constraint), e.g. volta32gb or intel&ib; no spaces or quotes."""


@dataclass(frozen=True)
class Accelerators:
    kind: Literal["dcu", "cuda", "cpu"] = "cpu"
    """Device family: dcu (ROCm-like DTK stack, torch.cuda API over HIP), cuda, or cpu (no devices)."""
    per_node: int = 0
    """Devices a node of this cluster has; one task per device, so tasks per node never exceed it."""
    request: Literal["gres", "gpus_per_node", "none"] = "none"
    """How jobs ask for devices: a raw --gres string (custom names like dcu), --gpus-per-node, or not at all."""
    gres: str | None = None
    """The raw gres string of a pre-training job, e.g. 'dcu:4' or 'dcu:Hygon:4' (count = tasks per node)."""


@dataclass(frozen=True)
class Resources:
    nodes: int = 1
    """Nodes per job."""
    tasks_per_node: int = 1
    """Tasks (processes) per node: one per device (srun starts them; ranks come from Slurm)."""
    cpus_per_task: int = 1
    """CPU cores per task (data loading workers live here)."""
    mem_gb: float = 4.0
    """Memory per node in GB; 0 asks for all of the node's memory (--mem=0)."""
    time_min: int = 60
    """Time limit in minutes; the preemption signal arrives `preemption.delay_s` before it."""
    exclusive: bool = False
    """Whole nodes only (--exclusive), as sites with 4-device nodes usually want."""


@dataclass(frozen=True)
class Preemption:
    signal: Literal["USR1", "USR2", "TERM", "INT", "HUP", "URG"] = "USR2"
    """Signal Slurm sends before preemption or the time limit (not USR1: NCCL/RCCL may swallow it)."""
    delay_s: int = 120
    """Seconds between that signal and the kill: enough to reach a step boundary and save."""
    max_requeues: int = 3
    """How many times a timed-out job requeues itself from its checkpoint before giving up."""
    requeue: bool = True
    """Submit stage jobs with --requeue, so that the job's own `scontrol requeue` (after the signal) and a
    preemption put it back in the queue even where the site's JobRequeue default is 0."""


@dataclass(frozen=True)
class Environment:
    setup: tuple[str, ...] = ()
    """Shell lines run before the job starts (module loads, env scripts, conda activation): the one place a
    profile writes shell, verbatim, one line per item."""
    env: dict[str, str] = field(default_factory=dict)
    """Environment variables exported for the job (keys: variable names); values are literal except for
    $NAME / ${NAME} references such as $SLURM_JOB_ID and $MST_SCRATCH."""
    node_dirs: tuple[str, ...] = ()
    """Names of variables in `env` that hold directories each task creates on its node before starting."""
    visible_devices: Literal["cuda_per_task", "hip_per_node", "none"] = "none"
    """Where Slurm or the site set a visible-device mask, every rank keeps it and uses its entry LOCAL_RANK
    (jobs/devices.py). Where none is set: cuda_per_task writes CUDA_VISIBLE_DEVICES = local rank; hip_per_node
    writes HIP_VISIBLE_DEVICES listing the node's first devices, one per rank, and no CUDA mask; none writes
    nothing."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Training precision this hardware wants; written into the run's config as train.precision."""
    python: str | None = None
    """Interpreter on the nodes, a name or path taken as one word; empty means the one submitting (same venv
    on a shared disk)."""


@dataclass(frozen=True)
class Storage:
    run_root: str = "runs"
    """Default runs root on the cluster's shared filesystem (mst-sweep --runs overrides it)."""
    scratch: str = "/tmp"
    """Node-local scratch directory (exported as MST_SCRATCH; per-job caches live under it); literal except
    for $NAME / ${NAME} references, e.g. $TMPDIR."""
    data_roots: dict[str, str] = field(default_factory=dict)
    """Where each data set (by data.name) lives on this cluster; written into the config as data.root."""


@dataclass(frozen=True)
class Limits:
    array_size: int = 1000
    """Most tasks in one job array (Slurm's MaxArraySize - 1); bigger sweeps are split."""
    array_parallelism: int = 64
    """Tasks of one array allowed to run at the same time (--array=...%N)."""
    sacct: bool = True
    """Whether accounting (sacct) answers; without it `status` asks squeue, which forgets finished jobs."""


@dataclass(frozen=True)
class ClusterProfile:
    name: str
    """Profile name (equals the file name)."""
    scheduler: Literal["slurm", "local"] = "local"
    """slurm: submit through sbatch; local: run the stages in this process, one after another."""
    slurm_conf: str | None = None
    """SLURM_CONF of this cluster when it is not the machine's default (e.g. a second local cluster)."""
    placement: Placement = field(default_factory=Placement)
    """Partition, account, qos, constraint."""
    accelerators: Accelerators = field(default_factory=Accelerators)
    """Device kind, count per node and how to request them."""
    resources: Resources = field(default_factory=Resources)
    """Shape of a pre-training job."""
    downstream: Resources = field(default_factory=Resources)
    """Shape of an evaluation job (k-NN, linear probes, attention maps): usually one device."""
    preemption: Preemption = field(default_factory=Preemption)
    """Signal, its delay, and requeues on timeout."""
    environment: Environment = field(default_factory=Environment)
    """Setup lines, variables, visible-device policy, precision."""
    storage: Storage = field(default_factory=Storage)
    """Run root, node-local scratch, data roots."""
    limits: Limits = field(default_factory=Limits)
    """Scheduler limits: array size and parallelism, sacct."""

    def shape(self, stage: str) -> Resources:
        """The resources of a job running `stage`."""
        return self.resources if stage in STAGES_WITH_PRETRAIN_SHAPE else self.downstream

    def gres(self, stage: str) -> str | None:
        """The raw --gres string of a `stage` job: the profile's string with the count set to its tasks."""
        if self.accelerators.request != "gres":
            return None
        head = self.accelerators.gres.rsplit(":", 1)[0]
        return f"{head}:{self.shape(stage).tasks_per_node}"


# ---------------------------------------------------------------------------------------- loading

# profiles list every valid key and put the near-miss last (their long-standing wording)
WORDING = {"unknown": "{where}: unknown key '{key}'; valid keys: {valid}{tail}"}


# the largest values Slurm takes (or a node could have): beyond them sbatch refuses or Python overflows
RESOURCE_MAXIMA = {"nodes": 65_536, "tasks_per_node": 4_096, "cpus_per_task": 4_096,
                   "mem_gb": 1 << 20, "time_min": 366 * 24 * 60}
MAX_SIGNAL_DELAY_S = 65_535  # --signal=SIG@delay: Slurm keeps the delay in 16 bits
MAX_REQUEUES = 10_000
MAX_ARRAY_SIZE = 4_000_000  # MaxArraySize's ceiling


def _check(where: str, p: ClusterProfile) -> None:
    def fail(problem: str, fix: str) -> None:
        raise ProfileError(f"profile {where}: {problem}; {fix}")

    acc, env = p.accelerators, p.environment
    if acc.kind != "cpu" and acc.per_node < 1:
        fail(f"accelerators.per_node is {acc.per_node} for kind {acc.kind}",
             "set it to the devices each node has (e.g. 4), or use kind cpu")
    if acc.kind == "cpu" and acc.request != "none":
        fail(f"accelerators.request is {acc.request} but kind is cpu", "use request none for cpu nodes")
    if acc.kind != "cpu" and acc.request == "none" and p.scheduler == "slurm":
        fail(f"accelerators.request is none for {acc.kind} devices", "use request gres or gpus_per_node")
    if acc.request == "gres":
        if not acc.gres or not re.fullmatch(r"[A-Za-z][\w-]*(:[\w-]+)?:\d{1,4}", acc.gres):
            fail(f"accelerators.gres is {brief(acc.gres)}", "write it as name:count or name:type:count, e.g. dcu:4")
        if int(acc.gres.rsplit(":", 1)[1]) != p.resources.tasks_per_node:
            fail(f"accelerators.gres {acc.gres} asks for a different count than resources.tasks_per_node "
                 f"({p.resources.tasks_per_node})", "use one task per device")
    elif acc.gres:
        fail("accelerators.gres is set but request is not gres", "set request: gres or drop gres")
    if acc.kind == "dcu" and acc.request == "gpus_per_node":
        fail("DCUs cannot be requested with gpus_per_node (it asks for gres gpu)", "use request: gres, gres: dcu:4")
    if acc.kind == "dcu" and env.visible_devices == "cuda_per_task":
        fail("visible_devices cuda_per_task on DCU nodes can leave zero devices", "use hip_per_node")
    for section in ("resources", "downstream"):
        r: Resources = getattr(p, section)
        for key in ("nodes", "tasks_per_node", "cpus_per_task", "time_min"):
            if getattr(r, key) < 1:
                fail(f"{section}.{key} is {getattr(r, key)}", f"set {section}.{key} to at least 1")
        if r.mem_gb < 0:
            fail(f"{section}.mem_gb is {r.mem_gb}", "use 0 for the whole node or a positive size")
        for key, most in RESOURCE_MAXIMA.items():
            if getattr(r, key) > most:
                fail(f"{section}.{key} is {getattr(r, key)}, more than Slurm takes ({most})",
                     f"give at most {most}")
        if acc.kind != "cpu" and r.tasks_per_node > acc.per_node:
            fail(f"{section}.tasks_per_node ({r.tasks_per_node}) exceeds the {acc.per_node} devices per node",
                 f"use at most {acc.per_node} tasks per node (one per device)")
    if p.scheduler == "slurm" and not p.placement.partition:
        fail("placement.partition is missing", "name the Slurm partition (sinfo lists them)")
    if p.preemption.delay_s < 1 or p.preemption.max_requeues < 0:
        fail("preemption.delay_s must be >= 1 and max_requeues >= 0", "e.g. delay_s: 120, max_requeues: 3")
    if p.preemption.delay_s > MAX_SIGNAL_DELAY_S or p.preemption.max_requeues > MAX_REQUEUES:
        fail(f"preemption.delay_s ({p.preemption.delay_s}) must be at most {MAX_SIGNAL_DELAY_S} (Slurm's --signal "
             f"limit) and max_requeues ({p.preemption.max_requeues}) at most {MAX_REQUEUES}",
             "e.g. delay_s: 120, max_requeues: 3")
    if p.limits.array_size < 1 or p.limits.array_parallelism < 1:
        fail("limits.array_size and limits.array_parallelism must be >= 1", "e.g. array_size: 1000")
    if p.limits.array_size > MAX_ARRAY_SIZE or p.limits.array_parallelism > MAX_ARRAY_SIZE:
        fail(f"limits.array_size and limits.array_parallelism must be at most {MAX_ARRAY_SIZE} (Slurm's largest "
             "MaxArraySize)", "use your site's MaxArraySize - 1 (scontrol show config)")
    missing = [v for v in env.node_dirs if v not in env.env]
    if missing:
        fail(f"environment.node_dirs names {missing[0]}, which environment.env does not set", "add it to env")


# ------------------------------------------------------------------------------------------ shell safety

_NAME = r"[A-Za-z0-9_.-]+"
# field -> (pattern the whole value must match, the fix to print)
_SLURM_WORDS = {
    "placement.partition": (re.compile(rf"{_NAME}(,{_NAME})*"),
                            "use a plain Slurm partition name, or a comma-separated list (sinfo lists them)"),
    "placement.account": (re.compile(_NAME), "use a plain Slurm account name (sacctmgr show assoc lists them)"),
    "placement.qos": (re.compile(_NAME), "use a plain Slurm QOS name (sacctmgr show qos lists them)"),
    "placement.constraint": (re.compile(r"[A-Za-z0-9_.,&|:*()\[\]!=-]+"),
                             "write a Slurm constraint without spaces or quotes, e.g. volta32gb or intel&ib"),
}


def _strings(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, string) of every string a profile holds: fields, list items, mapping keys and values."""
    out: list[tuple[str, str]] = []
    for f in dataclasses.fields(obj):
        value, key = getattr(obj, f.name), prefix + f.name
        if dataclasses.is_dataclass(value):
            out += _strings(value, key + ".")
        elif isinstance(value, str):
            out.append((key, value))
        elif isinstance(value, tuple):
            out += [(f"{key}[{i}]", v) for i, v in enumerate(value)]
        elif isinstance(value, dict):
            out += [(f"{key} key", k) for k in value] + [(f"{key}.{k}", v) for k, v in value.items()]
    return out


def shell_problems(p: ClusterProfile) -> Iterator[str]:
    """'problem; fix' of every profile string that could end an #SBATCH line or reach the shell unquoted."""
    for key, value in _strings(p):
        why = control_character(value)
        if why:
            fix = ("split it into separate setup items" if key.startswith("environment.setup")
                   else _SLURM_WORDS[key][1] if key in _SLURM_WORDS else "write it on one line")
            yield f"{key} contains {why}; {fix}"
    if not SAFE_NAME.fullmatch(p.name):
        yield (f"name {p.name!r} is not a path-safe name; use letters, digits, '.', '_' and '-' in the file "
               "name")
    for key, (pattern, fix) in _SLURM_WORDS.items():
        value = getattr(p.placement, key.split(".", 1)[1])
        if value is not None and not pattern.fullmatch(value):
            yield f"{key} {value!r} holds characters Slurm does not accept there; {fix}"
    for name in p.environment.env:
        if not ENV_NAME.fullmatch(name):
            yield (f"environment.env key {name!r} is not a variable name; use letters, digits and _ (not "
                   "starting with a digit), e.g. NCCL_SOCKET_IFNAME")
    if p.environment.python is not None and not p.environment.python.strip():
        yield ("environment.python is empty; name the interpreter (e.g. python or /opt/env/bin/python) or "
               "drop it")


def refuse_unsafe(p: ClusterProfile, where: str) -> None:
    """Raise ProfileError (one line) for the first string of `p` that is not safe in an sbatch script."""
    unsafe = next(shell_problems(p), None)
    if unsafe:
        raise ProfileError(f"profile {where}: {unsafe}")


def load_profile(name_or_path: str) -> ClusterProfile:
    """The profile `clusters/<name>.yaml`, or a YAML file path; raises ProfileError (one line) when bad."""
    try:  # no such profile, bad YAML, wrong keys or types: worded by config_io and the codec
        path = resolve_named_yaml(name_or_path, CLUSTERS_DIR, "cluster")
        data = read_yaml(path, "profile")
        if isinstance(data, dict) and "name" not in data:  # the codec's fix would not say which name
            raise ProfileError(f"profile {path}: 'name' is missing; add name: {path.stem}")
        profile = decode(ClusterProfile, data, f"profile {path}", WORDING)
        check_name_is_stem(profile.name, path, f"profile {path}", show_stem=False)
    except ConfigError as err:
        raise ProfileError(str(err)) from None
    where = str(path)
    refuse_unsafe(profile, where)
    _check(where, profile)
    return profile
