"""The pool of pre-trainings of a runs root (jobs.pool, jobs.rundir): one pre-training per run id, whichever
sweeps ask for it; a root made before the pool keeps its results, its status and its tables.

The submissions that share a pre-training on the real local Slurm cluster are in tests/test_pool_slurm.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from analysis.synthetic import write_sweep_records
from jobs import rundir
from jobs.launcher import LaunchError, status, submit
from jobs.sweep import load_sweep

REPO = Path(__file__).resolve().parent.parent
PAPER = sorted(p.stem for p in (REPO / "sweeps").glob("*.yaml") if p.stem != "budgets")
SHARE = re.compile(r"^(\S+): (\d+) pooled pre-trainings, (\d+) new, (\d+) shared")
ARRAY = re.compile(r"^# --- array \d+/\d+: pretrain x (\d+) on ")


def test_paper_sweeps_submit_each_pretraining_once(tmp_path):
    """Every paper sweep on dcu128, dry-run into one runs root in sequence: the pre-training arrays hold each
    distinct pre-training config once, where one folder per sweep trained the shared ones again."""
    runs = tmp_path / "runs"
    planned: dict[str, str] = {}
    lines: list[str] = []
    for name in PAPER:
        submit(name, "dcu128", str(runs), dry_run=True, out=lines.append, planned=planned)
    asked = {load_sweep(n).name: [r.run_id for r in load_sweep(n).expand() if "pretrain" in r.stages] for n in PAPER}
    distinct = {run_id for ids in asked.values() for run_id in ids}
    shares = {m[1]: (int(m[2]), int(m[3]), int(m[4])) for m in map(SHARE.match, lines) if m}
    submitted = sum(int(m[1]) for m in map(ARRAY.match, lines) if m)
    per_sweep = sum(len(ids) for ids in asked.values())
    print(f"paper sweeps on dcu128: {per_sweep} pre-trainings asked for, {len(distinct)} distinct configs, "
          f"{submitted} submitted")
    assert per_sweep > len(distinct)  # sweeps do share pre-trainings
    assert submitted == len(distinct) == len(planned)
    assert sum(new for _, new, _ in shares.values()) == len(distinct)
    for name, ids in asked.items():  # each sweep says how many of its pre-trainings are new and shared
        total, new, shared = shares[name]
        assert total == len(ids) and new + shared == total
    assert not runs.exists()  # a dry run writes nothing


def test_a_sweep_may_not_take_the_pools_name(tmp_path):
    path = tmp_path / "pretrain.yaml"
    path.write_text((REPO / "sweeps" / "k_sweep.yaml").read_text().replace("name: k_sweep", "name: pretrain"))
    with pytest.raises(LaunchError, match="may not be named 'pretrain'"):
        submit(str(path), "dcu128", str(tmp_path / "runs"), dry_run=True, out=lambda _: None)


# ------------------------------------------------------------------ a runs root made before the pool

OLD = ("k_sweep_smoke", "probe_smoke")  # at budget smoke they share both of k_sweep's pre-trainings


def _old_layout_root(root: Path) -> None:
    """A runs root as the code before the pool wrote it: every sweep holds its own `<run_id>/pretrain/`
    folder (records, config.yaml, a manifest line per submitted stage), the shared run ids twice."""
    for name in OLD:
        specs = load_sweep(name).expand()
        write_sweep_records(root, specs)
        lines = []
        for i, spec in enumerate(specs):
            (root / name / spec.run_id / "config.yaml").write_text(f"train: {{seed: {spec.seed}}}\n")
            (root / name / spec.run_id / "pretrain" / "checkpoint.pt").write_bytes(b"weights of " + name.encode())
            lines += [{"time": "2026-11-27T09:00:00Z", "run_id": spec.run_id, "stage": stage, "job_id": f"{7 + j}_{i}",
                       "cluster": "local-slurm", "dependency": None, "repeat": spec.repeat, "cell": spec.cell}
                      for j, stage in enumerate(spec.stages)]
        (root / name / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


def _report(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "analysis.cli", *args], check=False, cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    # the pool's folder is never taken for a sweep: nothing on stderr but the note naming the tables no records fill
    problems = [ln for ln in out.stderr.splitlines() if not ln.startswith("note: no records under ")]
    assert out.returncode == 0 and not problems and "(pretrain)" not in out.stderr, out.stderr
    return out.stdout


def _views(root: Path) -> tuple:
    """What a user sees of the root: mst-report status and tables, and mst-sweep status of every sweep."""
    states = [[(s.run_id, s.stage, s.state, s.job_id) for s in status(n, "local-slurm", root)] for n in OLD]
    return (_report("status", "--runs", str(root)), _report("tables", "--runs", str(root), "--format", "csv"), states)


def _contents(root: Path) -> Counter:
    """Every file's bytes under the root (links not followed, caches and manifests left out)."""
    return Counter(Path(d, f).read_bytes() for d, _, files in os.walk(root) for f in files
                   if not f.startswith(".") and f != "manifest.jsonl")


def test_a_root_made_before_the_pool_keeps_its_results_status_and_tables(tmp_path):
    root = tmp_path / "runs"
    _old_layout_root(root)
    before, files = _views(root), _contents(root)
    assert "done" in before[0] and all(s[2] == "done" for view in before[2] for s in view)

    # found and used where it is: a sweep's own pre-training folder stays its own, nothing is submitted again
    assert all(rundir.SweepFolder(root, n).owns_pretrain(s.run_id) for n in OLD for s in load_sweep(n).expand())
    for name in OLD:
        lines: list[str] = []
        submit(name, "local-slurm", str(root), dry_run=True, out=lines.append)
        assert lines[0].startswith(f"{name}: 0 pooled pre-trainings, 0 new, 0 shared") and "2 in the sweep's own" \
            in lines[0] and f"{name}: nothing to submit on local-slurm" in lines, lines
    assert _views(root) == before

    # moved by one command: one copy of each run id into the pool, the duplicate stays, nothing lost
    out = subprocess.run([sys.executable, "-m", "jobs.cli.sweep", "pool", "--runs", str(root)], check=False,
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    shared = {s.run_id for s in load_sweep(OLD[0]).expand()} & {s.run_id for s in load_sweep(OLD[1]).expand()}
    assert f"moved {len(shared)} pre-trainings into the pool" in out.stdout, out.stdout
    for run_id in shared:
        owned = [rundir.SweepFolder(root, n).owns_pretrain(run_id) for n in OLD]
        assert owned == [False, True]  # the first sweep's copy moved, the second's stayed
        pooled = rundir.SweepFolder(root, rundir.POOL).stage(run_id, "pretrain")
        assert (pooled / "checkpoint.pt").read_bytes() == b"weights of " + OLD[0].encode()
    assert not files - _contents(root)  # every file is still there (moved, not dropped; config.yaml also copied)
    pool_jobs = {(r["run_id"], r["job_id"]) for r in rundir.read_manifest(rundir.SweepFolder(root, rundir.POOL))}
    assert len(pool_jobs) == len(shared)  # the moved pre-trainings' jobs, so status still names them
    assert _views(root) == before
    lines = []
    submit(OLD[0], "local-slurm", str(root), dry_run=True, out=lines.append)
    assert lines[0] == f"{OLD[0]}: 2 pooled pre-trainings, 0 new, 2 shared (2 done, 0 queued or running)", lines
    assert f"{OLD[0]}: nothing to submit on local-slurm" in lines


def test_dry_run_counts_a_pooled_pretraining_as_shared(tmp_path):
    """A pre-training that another sweep left done in the pool is shared, not new; a dry run writes nothing."""
    root = tmp_path / "runs"
    specs = load_sweep("probe_smoke").expand()
    write_sweep_records(root, specs[:1])  # probe_smoke's first pre-training, moved into the pool as it ran
    (root / rundir.POOL / specs[0].run_id).mkdir(parents=True)
    os.rename(root / "probe_smoke" / specs[0].run_id / "pretrain",
              rundir.SweepFolder(root, rundir.POOL).stage(specs[0].run_id, "pretrain"))
    before = sorted(str(p) for p in root.rglob("*"))
    for cluster in ("local", "dcu128"):
        lines: list[str] = []
        submit("k_sweep_smoke", cluster, str(root), dry_run=True, out=lines.append)
        assert "k_sweep_smoke: 2 pooled pre-trainings, 1 new, 1 shared (1 done, 0 queued or running)" in lines, lines
    assert sorted(str(p) for p in root.rglob("*")) == before


def test_a_deleted_pool_entry_is_made_again_under_the_link(tmp_path):
    """Deleting a pooled pre-training (to train it again) leaves the sweeps' links; the next submission makes
    the entry again, so the job's writes through the link have a folder."""
    root = tmp_path / "runs"
    folder = rundir.SweepFolder(root, "s")
    rundir.link_pretrain(folder, "abc-r0")
    pooled = rundir.SweepFolder(root, rundir.POOL).stage("abc-r0", "pretrain")
    assert folder.links_pretrain("abc-r0") and pooled.is_dir()
    pooled.rmdir()
    rundir.link_pretrain(folder, "abc-r0")
    assert folder.stage("abc-r0", "pretrain").resolve() == pooled.resolve()
    assert folder.stage("abc-r0", "pretrain").is_dir()
