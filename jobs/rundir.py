"""Run folders, keyed by run id (never by Slurm job id), and their atomic files.

    <runs_root>/<sweep>/manifest.jsonl          one line per submitted (run, stage): job id, cluster, time
    <runs_root>/<sweep>/.submitit/<cluster>-<time>/<job id>/   submitit's scripts, pickles and logs
    <runs_root>/<sweep>/<run_id>/config.yaml    the resolved config (profile overrides included)
    <runs_root>/<sweep>/<run_id>/<stage>/       checkpoint.pt, metrics.jsonl, result.json, slurm/ (log links)

These paths are joined in one place, `SweepFolder`, built once per sweep (its name checked then) and passed
around instead of (runs root, sweep name).

The pool: a pre-training is keyed by its run id and trained once per runs root, whichever sweeps ask for it.

    <runs_root>/pretrain/manifest.jsonl                   every submission of a pooled pre-training (+ its sweep)
    <runs_root>/pretrain/<run_id>/config.yaml             as in a sweep's run folder
    <runs_root>/pretrain/<run_id>/pretrain/               the stage folder, shared
    <runs_root>/<sweep>/<run_id>/pretrain -> ../../pretrain/<run_id>/pretrain    (relative link)

A sweep's `<run_id>/pretrain` that is a real folder (made before the pool existed) stays that sweep's own.

Only the standard library and PyYAML here (and jobs.yaml_read, to check a config.yaml already written):
`mst-sweep status` reads these without importing torch.

Containment: every folder name below a runs root (sweep, run id, stage) must be a path-safe name, and every
path this module hands out for writing resolves under its runs root (a planted symlink cannot redirect it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.errors import LaunchError
from jobs.runstate import RECORD_STATUSES
from mst.atomic import atomic_write_text, read_json
from mst.inputs import InputError, read_jsonl_lines

# a folder name: letters, digits, '.', '_', '-'; starts with a letter or digit (so never '.', '..' or hidden)
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MANIFEST_KEYS = ("run_id", "stage", "job_id")  # required; cluster and time are checked when present
LOCK_NAME = ".submit.lock"
POOL = "pretrain"  # the pool's folder under a runs root: a name no sweep may take
TIME_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


class RunFolderError(ValueError):
    """A run folder or manifest that cannot be used as it is; the message is one line naming the fix."""


def check_name(kind: str, value: Any) -> str:
    """`value` when it is a path-safe folder name, else a RunFolderError naming `kind`."""
    if not isinstance(value, str) or not SAFE_NAME.fullmatch(value):
        raise RunFolderError(f"{kind} {value!r} is not a path-safe name; use letters, digits, '.', '_' and '-' "
                             "(starting with a letter or digit, at most 128 characters)")
    return value


def contained(runs_root: str | Path, path: str | Path) -> Path:
    """`path` when it resolves under `runs_root` (symlinks followed), else a RunFolderError."""
    root, target = Path(runs_root).resolve(), Path(path).resolve()
    if target != root and root not in target.parents:
        raise RunFolderError(f"{path} resolves to {target}, outside the runs root {root}; remove the link "
                             "that leads there or use another --runs root")
    return Path(path)


@dataclass(frozen=True)
class SweepFolder:
    """A sweep's folder under a runs root (or the pool's, named POOL), its name checked once when built: the
    one place a sweep's paths are joined, handed around instead of (runs root, sweep name)."""

    root: Path
    """The runs root."""
    name: str
    """The sweep's name, a path-safe folder name (RunFolderError otherwise); POOL for the pool."""
    path: Path = field(init=False)
    """`<root>/<name>`."""
    manifest: Path = field(init=False)
    """`<root>/<name>/manifest.jsonl`: one line per submitted (run, stage)."""
    submitit: Path = field(init=False)
    """`<root>/<name>/.submitit`: submitit's scripts, pickles and logs; a dot folder, never taken for a run."""

    def __post_init__(self) -> None:
        path = Path(self.root) / check_name("sweep name", self.name)
        # frozen: the derived paths are set here, once
        for key, value in (("root", Path(self.root)), ("path", path), ("manifest", path / "manifest.jsonl"),
                           ("submitit", path / ".submitit")):
            object.__setattr__(self, key, value)

    def run(self, run_id: str) -> Path:
        """`<root>/<name>/<run_id>`: the run's folder (its config.yaml)."""
        return self.path / check_name("run id", run_id)

    def stage(self, run_id: str, stage: str) -> Path:
        """`<root>/<name>/<run_id>/<stage>`: checkpoint.pt, metrics.jsonl, result.json, slurm/."""
        return self.path / check_name("run id", run_id) / check_name("stage", stage)

    def owns_pretrain(self, run_id: str) -> bool:
        """The sweep's `<run_id>/pretrain` is a real folder (a root made before the pool): it stays the sweep's."""
        path = self.stage(run_id, "pretrain")
        return path.is_dir() and not path.is_symlink()

    def pooled(self, run_ids: Iterable[str]) -> set[str]:
        """Those of `run_ids` (runs with a pretrain stage) whose pre-training lives in the pool: all but the
        ones the sweep holds as its own."""
        return {run_id for run_id in run_ids if not self.owns_pretrain(run_id)}

    def links_pretrain(self, run_id: str) -> bool:
        """The sweep's `<run_id>/pretrain` is a link into the pool."""
        return self.stage(run_id, "pretrain").is_symlink()


def link_pretrain(folder: SweepFolder, run_id: str) -> None:
    """Make the sweep's `<run_id>/pretrain` a relative link to the pooled stage folder, created empty when
    absent (new, or deleted to train it again), so the link never dangles; a real folder is left as it is."""
    if folder.owns_pretrain(run_id):
        return
    link = folder.stage(run_id, "pretrain")
    target = contained(folder.root, SweepFolder(folder.root, POOL).stage(run_id, "pretrain"))
    target.mkdir(parents=True, exist_ok=True)
    if link.is_symlink():
        return
    contained(folder.root, link.parent).mkdir(parents=True, exist_ok=True)
    try:
        link.symlink_to(Path("..") / ".." / POOL / run_id / "pretrain", target_is_directory=True)
    except FileExistsError:
        pass  # a concurrent submission of the same sweep made it


def write_run_configs(runs: list[Any], folder: SweepFolder, cluster: str) -> None:
    """config.yaml of every run (a jobs.plan.Run) and of its pool entry, and the link from each run folder to
    its pooled pre-training (libyaml's emitter when present: the pure-Python one dominates big sweeps).

    A run folder (or pool entry) that already holds another config (the sweep ran on a cluster with another
    precision or data root under this runs root) raises LaunchError, before anything is written or submitted.
    """
    import yaml

    from jobs.yaml_read import read_yaml_file

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    pooled = folder.pooled(run.run_id for run in runs if "pretrain" in run.spec.stages)
    entries = SweepFolder(folder.root, POOL)
    texts = {}
    for run, home in [(run, folder) for run in runs] + [(run, entries) for run in runs if run.run_id in pooled]:
        path = contained(folder.root, home.run(run.run_id) / "config.yaml")
        texts[path] = yaml.dump(run.config_dict, Dumper=dumper, sort_keys=False)
        if path.is_file() and path.read_bytes() != texts[path].encode():
            try:
                found = read_yaml_file(path, "run config")
            except (yaml.YAMLError, UnicodeDecodeError, InputError, OSError):
                raise LaunchError(f"{path} is not valid YAML (it was not written by mst-sweep, or was edited); "
                                  "it is left as it is: move it aside, or submit with another --runs root") from None
            if found != run.config_dict:
                raise LaunchError(f"run folder {path.parent} holds another config than cluster '{cluster}' would "
                                  "run (another precision or data root); submit with another --runs root")
    for path, text in texts.items():
        write_config(folder.root, path, text)
    for run_id in sorted(pooled):
        link_pretrain(folder, run_id)


def write_config(runs_root: str | Path, path: Path, config_yaml: str) -> None:
    """config.yaml of a run; rewritten only when its content changed (resubmissions leave it alone)."""
    path = contained(runs_root, path)
    if path.is_file() and path.read_text() == config_yaml:
        return
    atomic_write_text(path, config_yaml)


@dataclass(frozen=True)
class ManifestEntry:
    """One line of a sweep's manifest.jsonl: a stage of a run handed to a scheduler (the time it was
    appended comes first; the pool's own list adds the sweep)."""

    run_id: str
    """The run's id, its folder's name."""
    stage: str
    """The stage submitted."""
    job_id: str
    """`<array>_<task>` (Slurm) or `local-<pid>` (cluster local)."""
    cluster: str
    """The cluster profile's name."""
    dependency: str | None
    """The sbatch --dependency it was submitted with, or None."""
    repeat: int
    """Which repeat of its cell the run is."""
    cell: dict[str, Any]
    """The run's swept values, {dotted key: value}."""

    @classmethod
    def of(cls, run: Any, stage: str, job_id: str, cluster: str, dependency: str | None) -> ManifestEntry:
        """The entry of `stage` of `run` (a jobs.plan.Run), handed to `cluster` as job `job_id`."""
        return cls(run.run_id, stage, job_id, cluster, dependency, run.spec.repeat, run.spec.cell)

    def encode(self) -> dict[str, Any]:
        """The entry as the manifest holds it (after its time), in field order."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def append_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    """Append whole lines under an exclusive lock, one write, fsync: concurrent writers never interleave."""
    if not records:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode()
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)  # the umask decides the mode
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            payload = b"\n" + payload  # a writer killed mid-line: its torn line must not swallow these
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)


def append_manifest(folder: SweepFolder, records: list[dict[str, Any]], pooled: Iterable[str] = ()) -> None:
    """Append submission records to the sweep's manifest, each led by the time (UTC) it was appended; those of
    the pre-trainings of `pooled` run ids go to the pool's own list too (with the sweep's name), where the next
    sweep that needs them finds their jobs."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    append_jsonl(contained(folder.root, folder.manifest), [{"time": stamp, **r} for r in records])
    pooled = set(pooled)
    shared = [{"time": stamp, **r, "sweep": folder.name} for r in records
              if r["stage"] == "pretrain" and r["run_id"] in pooled]
    if shared:
        append_jsonl(contained(folder.root, SweepFolder(folder.root, POOL).manifest), shared)


def _is_date(stamp: str) -> bool:
    """A stamp of TIME_STAMP's shape that names a real UTC time (not month 13 nor second 99)."""
    try:
        time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return False
    return True


def _manifest_problem(record: Any) -> str | None:
    if isinstance(record, InputError):
        return str(record)
    if not isinstance(record, dict):
        return f"is a JSON {type(record).__name__}, not a submission record"
    for key in MANIFEST_KEYS:
        if key not in record:
            return f"has no '{key}'"
    for key in ("run_id", "stage", "cluster"):
        if key in record and (not isinstance(record[key], str) or not SAFE_NAME.fullmatch(record[key])):
            return f"has an unusable {key} {record[key]!r}"
    if isinstance(record["job_id"], bool) or not isinstance(record["job_id"], (str, int)):
        return f"has an unusable job_id {record['job_id']!r}"
    stamp = record.get("time", "1970-01-01T00:00:00Z")
    if not isinstance(stamp, str) or not TIME_STAMP.fullmatch(stamp) or not _is_date(stamp):
        return f"has an unusable time {stamp!r}"
    return None


def read_manifest(folder: SweepFolder) -> list[dict[str, Any]]:
    """The submission records of a sweep; a torn last line is skipped, a malformed record is one
    RunFolderError line (nothing is rewritten: the file is the only list of what was submitted)."""
    path = folder.manifest
    if not path.is_file():
        return []
    records = []
    for number, record in read_jsonl_lines(path, "manifest"):
        problem = _manifest_problem(record)
        if problem:
            raise RunFolderError(f"{path} line {number} {problem}; restore that line (run_id, stage, job_id, "
                                 "cluster, time) or delete it, then run the command again")
        records.append(record)
    return records


def latest_submissions(folder: SweepFolder, pooled: Iterable[str] | None = None
                       ) -> dict[tuple[str, str], dict[str, Any]]:
    """The last manifest record of every (run_id, stage); the pre-training of a run in `pooled` (by default:
    the runs whose `<run_id>/pretrain` links to the pool) is the pool's last submission of it, when the pool
    has one (another sweep may have submitted or resubmitted it since)."""
    latest = {(r["run_id"], r["stage"]): r for r in read_manifest(folder)}
    if folder.name == POOL:
        return latest
    if pooled is None:
        pooled = [run_id for run_id in {run_id for run_id, _ in latest} if folder.links_pretrain(run_id)]
    pooled = sorted(set(pooled))
    if pooled:  # the pool's manifest is read only when a run shares its pre-training
        pool = latest_submissions(SweepFolder(folder.root, POOL))
        latest.update({(run_id, "pretrain"): pool[(run_id, "pretrain")] for run_id in pooled
                       if (run_id, "pretrain") in pool})
    return latest


@contextlib.contextmanager
def submit_locks(runs_root: str | Path, folders: Iterable[Path], sweep: str | None = None) -> Iterator[None]:
    """Hold `<folder>/.submit.lock` of every folder (flock, in sorted order so two submissions never wait on
    each other crosswise), each naming its holder's pid. The kernel drops the locks when their holder dies, so a
    killed submission never leaves anything locked. A pool entry's lock held elsewhere is waited for (then its
    job is seen); with `sweep` (the sweep's own folder), a second submission of that sweep fails at once with
    one line naming the holder's pid instead of submitting the same runs twice."""
    fds: list[int] = []
    try:
        for folder in sorted(set(folders)):
            path = contained(runs_root, Path(folder) / LOCK_NAME)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            fds.append(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (fcntl.LOCK_NB if sweep else 0))
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                raise RunFolderError(f"another submission of sweep {sweep} is running (pid {holder}); wait for "
                                     "it to end, then run the command again") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        for fd in fds:
            os.close(fd)


def result_status(path: Path) -> str | None:
    """'done' | 'failed' | 'running' | 'preempted' from a stage folder's result.json, None without one."""
    result = read_json(Path(path) / "result.json")
    status = result.get("status") if isinstance(result, dict) else None
    return status if status in RECORD_STATUSES else None


def failed_last(folder: SweepFolder, runs: list[Any], stages: Iterable[str]) -> list[Any]:
    """`runs` (each with a `run_id`) in their order, those with a failed record of one of `stages` in `folder`
    last: a known-bad cell never delays the rest of a local sweep."""
    def failed_before(run: Any) -> bool:
        return any(result_status(folder.stage(run.run_id, s)) == "failed" for s in stages)

    return sorted(runs, key=failed_before)  # stable: the given order within each group
