"""Preflight: does a cluster profile hold on its nodes? (`mst-sweep check`, `mst-sweep submit --preflight`)

A Slurm profile gets one short job with its pre-training node shape, cut to two nodes where it has more (so
the all-reduce crosses nodes); `scheduler: local` probes in this process. Every rank reports what it finds
(jobs.preflight_probe); this side compares the reports with the profile, prints one table and returns one
line per problem.
"""

from __future__ import annotations

import dataclasses
import operator
import re
import time
import uuid
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from jobs.devices import mask_entries
from jobs.preflight_probe import probe
from jobs.profiles import ClusterProfile
from jobs.scheduler import (
    check_cluster,
    python_word,
    sbatch_refused,
    scancel,
    slurm_conf_of,
    slurm_parameters,
)
from mst.compat import TORCH_FLOOR, TORCHVISION_FLOOR, version_tuple

PREFLIGHT_NODES = 2       # enough for the collective to cross nodes
PREFLIGHT_TIME_MIN = 10   # the job's time limit; the probe itself takes seconds
DEFAULT_WAIT_S = 900.0    # how long `check` waits for the job to start and end
DOWNSTREAM_STAGE = "knn"  # a stage with the downstream shape (profiles.STAGES_WITH_PRETRAIN_SHAPE holds the rest)
MIN_FREE_GIB = 1.0        # less free space than this where checkpoints or caches go is a problem
# what a profile's setup may not provide: the range the toolkit is tested on when its metadata is absent
FALLBACK_RANGES = {"python": ">=3.10", "torch": ">={}.{}".format(*TORCH_FLOOR),
                   "torchvision": ">={}.{}".format(*TORCHVISION_FLOOR), "timm": ">=1.0.23,<1.1"}


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the printed table."""

    check: str
    """What was checked, e.g. 'torch version' or 'all-reduce'."""
    where: str
    """The node it was checked on (or the ranks and nodes of the all-reduce)."""
    found: str
    """What the check found, in words."""
    ok: bool
    """Whether that holds for the profile (the table prints BAD otherwise)."""


# ------------------------------------------------------------------------------------------ ranges


def supported_ranges() -> dict[str, str]:
    """{'python': '>=3.10', 'torch': '>=2.1', ...} from the installed package's metadata (pyproject.toml)."""
    ranges = dict(FALLBACK_RANGES)
    try:
        meta = metadata.metadata("mst-toolkit")
        ranges["python"] = meta.get("Requires-Python") or ranges["python"]
        for req in metadata.requires("mst-toolkit") or []:
            if ";" in req:  # extras (dev) are not what a node needs
                continue
            m = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*\(?([^)]*)\)?\s*", req)
            if m and m.group(1).lower() in ranges:
                ranges[m.group(1).lower()] = m.group(2).replace(" ", "")
    except metadata.PackageNotFoundError:
        pass
    return ranges


def in_range(version: str, spec: str) -> bool:
    """Whether `version` satisfies a '>=a,<b' style range (the only operators pyproject.toml uses here)."""
    compare = {">=": operator.ge, "<=": operator.le, "==": operator.eq, "<": operator.lt, ">": operator.gt}
    have = version_tuple(version)
    for clause in filter(None, spec.split(",")):
        m = re.fullmatch(r"(>=|<=|==|<|>)([\d.]+)", clause.strip())
        if m is None:
            continue
        bound = version_tuple(m.group(2))
        n = len(bound)  # compare at the bound's precision: 2.1.2 satisfies >=2.1 and ==2.1
        if not compare[m.group(1)]((have + (0,) * n)[:n], bound):
            return False
    return True


# ------------------------------------------------------------------------------------------ evaluation


def _once(lines: list[str]) -> list[str]:
    """`lines` in order, each said once: a problem every rank of a node shares is one line."""
    return list(dict.fromkeys(lines))


def evaluate(profile: ClusterProfile, reports: list[dict[str, Any]], tasks_per_node: int
             ) -> tuple[list[Row], list[str]]:
    """Table rows and problem lines (one per problem; a problem every rank of a node shares is said once)."""
    rows: list[Row] = []
    problems: list[str] = []
    problem = problems.append  # a line every rank of a node shares is said once, at the end (_once)
    acc = profile.accelerators
    # the devices one rank should see after the job layer's masks (jobs.devices.select_device)
    want = {"cuda_per_task": 1, "hip_per_node": tasks_per_node}.get(profile.environment.visible_devices,
                                                                    acc.per_node)
    ranges = supported_ranges()
    by_host: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(reports, key=lambda r: r["rank"]):
        by_host.setdefault(r["host"], []).append(r)

    for host, ranks in by_host.items():
        first = ranks[0]
        for pkg, version in first["versions"].items():
            spec = ranges.get(pkg, "")
            ok = version is not None and in_range(version, spec)
            rows.append(Row(f"{pkg} version", host, f"{version or 'not installed'} (supported {spec})", ok))
            if not ok:
                problem(f"{host}: {pkg} {version or 'is not installed'}"
                        + (f" is outside the supported range {spec}" if version else f" (needs {spec})")
                        + "; see the README's install guide for this site")
        dev = first["devices"]
        counts = [r["devices"]["count"] for r in ranks]
        names = sorted({n for r in ranks for n in r["devices"]["names"]})
        seen = f"{dev['build']} build {dev['build_version'] or ''}".strip()
        rows.append(Row("devices per rank", host,
                        f"{', '.join(map(str, counts))} ({seen}{'; ' + ', '.join(names) if names else ''})",
                        acc.kind == "cpu" or (min(counts) > 0 and min(counts) >= want)))
        for r in ranks:
            if r["devices"]["error"]:
                problem(f"{host}: rank {r['rank']} cannot query its devices ({r['devices']['error']})")
        if acc.kind != "cpu":
            if max(counts) == 0:
                problem(f"profile asks {acc.per_node} {acc.kind} per node; the node {host} shows 0 devices")
            else:
                for r in ranks:
                    if r["devices"]["count"] < want:
                        problem(f"{host}: rank {r['rank']} sees {r['devices']['count']} devices; "
                                f"visible_devices {profile.environment.visible_devices} should leave it {want}")
            family = {"dcu": "rocm", "cuda": "cuda"}[acc.kind]
            if dev["build"] != family:
                problem(f"{host}: profile asks {acc.kind} devices but torch {first['versions']['torch']} is a "
                        f"{dev['build']} build; install the site's build (README: "
                        f"{'DCU' if acc.kind == 'dcu' else 'V100'} site)")
        for r in ranks:
            s = r["step"]
            rows.append(Row(f"forward/backward rank {r['rank']}", host,
                            f"{s['device']} {s['precision']}: " + (f"loss {s['loss']:.4f}, {s['ms']} ms"
                                                                  if s["ok"] else s["error"]), s["ok"]))
            if not s["ok"]:
                problem(f"{host}: forward/backward on {s['device']} in {s['precision']} failed ({s['error']})")
        for key, label in (("run_root", "run root"), ("scratch", "scratch")):
            w = first[key]
            free = f", {w['free_gib']} GiB free" if w["free_gib"] is not None else ""
            low = w["free_gib"] is not None and w["free_gib"] < MIN_FREE_GIB
            rows.append(Row(f"{label} writable", host, (f"{w['path']}" + ("" if w["exists"] else " (created by jobs)")
                                                       + free if w["ok"] else w["detail"]), w["ok"] and not low))
            if not w["ok"]:
                problem(f"{host}: {label} {w['path']} is not writable from the node: {w['detail']}; fix "
                        f"storage.{key} or its permissions")
            elif low:
                problem(f"{host}: {label} {w['path']} has {w['free_gib']} GiB free (< {MIN_FREE_GIB}); free space "
                        f"or point storage.{key} elsewhere")
        for d in first["data_roots"]:
            rows.append(Row(f"data root {d['name']}", host, f"{d['path']}: {d['detail']}", d["ok"]))
            if not d["ok"]:
                problem(f"{host}: data root {d['name']} {d['path']} {d['detail']}; fix storage.data_roots.{d['name']}")

    red = [r["all_reduce"] for r in reports]
    first = red[0]
    ok = all(a["ok"] for a in red)
    hosts = len(by_host)
    how = first["backend"] + ("" if first["backend"] == first["wanted"] else f" ({first['wanted']} needs devices)")
    errors = sorted({a["error"] for a in red if a["error"]})
    n = len(reports)
    rows.append(Row("all-reduce", f"{n} rank{'s' if n > 1 else ''}, {hosts} node{'s' if hosts > 1 else ''}",
                    f"{how}: " + (f"sum {first['value']:g} as expected" if ok else (errors[0] if errors else
                                  f"got {[a['value'] for a in red]}, expected {first['expected']:g}")), ok))
    if not ok:
        problem(f"all-reduce over {first['backend']} across {len(reports)} ranks on {hosts} nodes failed "
                f"({errors[0] if errors else 'wrong sum'}); check the network variables (NCCL_SOCKET_IFNAME, "
                "NCCL_IB_HCA) in environment.env")
    return rows, _once(problems)


def evaluate_downstream(profile: ClusterProfile, reports: list[dict[str, Any]]) -> tuple[list[Row], list[str]]:
    """The downstream shape's devices: a k-NN or probe job asks for `downstream.tasks_per_node` devices,
    usually one on a node other jobs share. It must see exactly its own: Slurm (or the site's gres.conf,
    cgroups) must set a mask naming them, unless the job has the node to itself (downstream.exclusive)."""
    rows: list[Row] = []
    problems: list[str] = []
    want = profile.downstream.tasks_per_node
    job = f"a {want}-device downstream job"
    for r in sorted(reports, key=lambda r: r["rank"]):
        host, before, choice = r["host"], r.get("masks_before") or {}, r.get("choice") or {}
        variable = choice.get("variable")
        mask = before.get(variable) if variable in before else None
        entries = mask_entries(mask)
        if mask is None:
            found = (f"no mask from Slurm or the site; the job wrote {variable}={choice.get('mask')}"
                     if variable else "no mask from Slurm or the site")
        else:
            found = f"{variable}={mask} from Slurm or the site; rank {r['rank']} uses {choice.get('physical')}"
        problem = None
        if mask is None and not profile.downstream.exclusive:
            problem = (f"{host}: {job} gets no visible-device mask from Slurm or the site "
                       f"({profile.gres(DOWNSTREAM_STAGE) or 'gres gpu'}), so on a shared node it uses device 0 "
                       "whatever Slurm allocated; set downstream.exclusive: true in the profile (a whole node per "
                       "job), or have the site's gres.conf or cgroups set the mask")
        elif mask is not None and len(entries) > want:
            problem = (f"{host}: {job} sees {len(entries)} devices ({variable}={mask}); it must see its own only: "
                       "request its devices (accelerators.request) or set downstream.exclusive: true")
        elif mask is not None and not entries:
            problem = (f"{host}: {job} sees no device ({variable} is empty); check accelerators.request and "
                       "gres in the profile against the node's gres.conf")
        elif r["devices"]["count"] > want:
            problem = (f"{host}: {job} sees {r['devices']['count']} devices; it must see its own only: set "
                       "downstream.exclusive: true or have the site's cgroups isolate devices")
        rows.append(Row("downstream job devices", host, found, problem is None))
        if problem:
            problems.append(problem)
    return rows, _once(problems)


def format_table(rows: list[Row]) -> str:
    table = [Row("check", "where", "found", True), *rows]  # the header prints as a passing row does
    widths = [max(len(getattr(r, f)) for r in table) for f in ("check", "where")]
    return "\n".join(f"{r.check:{widths[0]}}  {r.where:{widths[1]}}  {'ok ' if r.ok else 'BAD'}  {r.found}"
                     for r in table)


# ------------------------------------------------------------------------------------------ running


def preflight_parameters(profile: ClusterProfile, shape: str = "pretrain") -> dict[str, Any]:
    """The job's parameters: the pre-training shape cut to two nodes, or the downstream shape (a k-NN job's:
    usually one device on a shared node), with a short time limit."""
    stage = "pretrain" if shape == "pretrain" else DOWNSTREAM_STAGE
    params = slurm_parameters(profile, stage, f"mst-preflight-{profile.name}")
    params["nodes"] = min(profile.shape(stage).nodes, PREFLIGHT_NODES)
    params["time"] = min(profile.shape(stage).time_min, PREFLIGHT_TIME_MIN)
    params["additional_parameters"].pop("requeue", None)  # the probe saves nothing: a requeue would rerun it
    return params


def _run_slurm(profile: ClusterProfile, runs_root: Path, wait_s: float, out: Callable[[str], None]
               ) -> dict[str, list[dict[str, Any]]] | str:
    """The reports of every task of the preflight jobs ({shape: reports}), or the one-line reason there are
    none. The pre-training shape always; the downstream shape too when the profile asks for devices."""
    import submitit

    check_cluster(profile)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
    folder = runs_root.absolute() / ".preflight" / f"{profile.name}-{stamp}" / "%j"
    shapes = ("pretrain",) + (("downstream",) if profile.accelerators.kind != "cpu" else ())
    with slurm_conf_of(profile):
        jobs = {}
        for shape in shapes:
            executor = submitit.SlurmExecutor(folder=folder, python=python_word(profile), max_num_timeout=0)
            params = preflight_parameters(profile, shape)
            executor.update_parameters(**params)
            try:
                jobs[shape] = executor.submit(probe, profile, str(runs_root.absolute()), under_slurm=True)
            except Exception as err:  # noqa: BLE001 - submitit's FailedJobError carries sbatch's own words
                raise sbatch_refused("the preflight job", str(err)) from None
            out(f"preflight job {jobs[shape].job_id} on {profile.name} ({shape} shape): {params['nodes']} node(s)"
                f" x {params['ntasks_per_node']} task(s), waiting for it")
        deadline = time.time() + wait_s
        while not all(job.done() for job in jobs.values()):
            if time.time() > deadline:
                late = [job for job in jobs.values() if not job.done()]
                states = ", ".join(f"{job.job_id} {job.state}" for job in late)
                scancel(profile, [str(job.job_id) for job in late])
                return (f"preflight job(s) {states} did not finish within {wait_s:.0f} s; cancelled; retry when "
                        "the partition has room, or pass --wait")
            time.sleep(2.0)
        found: dict[str, list[dict[str, Any]]] = {}
        for shape, job in jobs.items():
            try:
                found[shape] = list(job.results())
            except Exception as err:  # noqa: BLE001 - whatever failed on the node, its last line is the report
                text = str(err).strip().splitlines()
                why = next((ln.strip() for ln in reversed(text) if "Error" in ln), text[-1] if text else "?")
                return f"preflight job {job.job_id} failed on the node ({why[:300]}); see {job.paths.stdout}"
        return found


def run_check(profile: ClusterProfile, runs_root: Path, wait_s: float = DEFAULT_WAIT_S,
              out: Callable[[str], None] = print) -> list[str]:
    """Probe the profile's nodes, print the table, and return the problem lines (empty: all good)."""
    local = profile.scheduler == "local"
    found = ({"pretrain": [probe(profile, str(runs_root.absolute()), under_slurm=False)]} if local
             else _run_slurm(profile, runs_root, wait_s, out))
    if isinstance(found, str):
        return [found]
    rows, problems = evaluate(profile, found["pretrain"], 1 if local else profile.resources.tasks_per_node)
    if found.get("downstream"):
        more_rows, more = evaluate_downstream(profile, found["downstream"])
        rows += more_rows
        problems = _once(problems + more)
    out(f"preflight of {profile.name} ({profile.scheduler}):")
    out(format_table(rows))
    return problems
