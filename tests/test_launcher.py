"""Launcher logic without a scheduler: sbatch snapshots per profile, array planning, states, the CLI."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jobs import rundir
from jobs.config_io import yaml_names
from jobs.launcher import submit
from jobs.plan import Array, Run, plan_arrays
from jobs.profiles import CLUSTERS_DIR, load_profile
from jobs.runstate import classify
from jobs.scheduler import dependency_of, render_sbatch, slurm_parameters
from jobs.states import task_state
from mst.atomic import atomic_write_json

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
# each has a snapshot
SLURM_PROFILES = [name for name in yaml_names(CLUSTERS_DIR) if load_profile(name).scheduler == "slurm"]

ONE_RUN_SWEEP = """name: snap
table: A10
preset: tiny
repeats: 1
base_seed: 0
stages: [pretrain]
overrides: {}
grid: {}
"""


def _mask(text: str, runs: Path) -> str:
    text = text.replace(str(runs.resolve()), "<RUNS>").replace(sys.executable, "<PYTHON>")
    return re.sub(r"\.submitit/([\w-]+)-\d{8}T\d{6}-[0-9a-f]{6}/", r".submitit/\1-<STAMP>/", text)


def _dry_run(tmp_path: Path, cluster: str, sweep_text: str = ONE_RUN_SWEEP, name: str = "snap") -> list[str]:
    sweep = tmp_path / f"{name}.yaml"
    sweep.write_text(sweep_text)
    lines: list[str] = []
    submit(str(sweep), cluster, str(tmp_path / "runs"), dry_run=True, out=lines.append)
    return lines


@pytest.mark.parametrize("cluster", SLURM_PROFILES)
def test_pretrain_sbatch_snapshot(tmp_path, cluster):
    """A profile change shows up as a diff here; refresh with MST_UPDATE_SNAPSHOTS=1 after checking it."""
    lines = _dry_run(tmp_path, cluster)
    script = _mask(next(t for t in lines if t.startswith("#!/bin/bash")), tmp_path / "runs")
    snap = SNAPSHOTS / f"{cluster}.pretrain.sbatch"
    if os.environ.get("MST_UPDATE_SNAPSHOTS") == "1":
        snap.parent.mkdir(exist_ok=True)
        snap.write_text(script)
    assert snap.is_file(), f"no snapshot {snap}; create it with MST_UPDATE_SNAPSHOTS=1 and review it"
    assert script == snap.read_text()


def test_dry_run_writes_nothing(tmp_path):
    _dry_run(tmp_path, "dcu128")
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(shutil.which("srun") is None, reason="submitit's SlurmExecutor needs srun on PATH")
def test_rendered_script_is_what_submitit_submits(tmp_path):
    import submitit

    from jobs.scheduler import submitit_command

    profile = load_profile("local-dcu")
    folder = tmp_path / "slurm" / "%j"
    executor = submitit.SlurmExecutor(folder=folder)
    executor.update_parameters(**slurm_parameters(profile, "pretrain", "name"))
    assert executor._make_submission_file_text(submitit_command(executor.python, folder), "uid") == \
        render_sbatch(profile, "pretrain", "name", folder, 1)


def test_dcu128_dry_run_of_a_paper_sweep():
    proc = subprocess.run([sys.executable, "-m", "jobs.cli.sweep", "submit", "loss_weight", "--cluster", "dcu128",
                           "--dry-run"], cwd=ROOT, check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    scripts = proc.stdout.count("#!/bin/bash")
    assert scripts == 2  # one pretrain array, one aligned linear_cls array
    assert proc.stdout.count("#SBATCH --gres=dcu:4") == 1 and "#SBATCH --gres=dcu:1" in proc.stdout
    assert "--gpus-per-node" not in proc.stdout
    assert "module load compiler/devtoolset/7.3.1 mpi/hpcx/2.11.0/gcc-7.3.1 compiler/dtk/23.10" in proc.stdout
    assert "#SBATCH --array=0-19%20" in proc.stdout


def test_cli_help_imports_no_torch():
    code = ("import sys\nfrom jobs.cli import sweep\ntry:\n    sweep.main(['--help'])\nexcept SystemExit:\n"
            "    pass\nprint('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip().endswith("NO-TORCH"), proc.stdout


def _runs(n: int) -> list[Run]:
    return [Run(f"r{i:02d}", None, None) for i in range(n)]


def test_arrays_split_at_the_size_limit_and_align_downstream():
    runs = _runs(7)
    arrays = plan_arrays({"pretrain": runs, "knn": runs}, ("pretrain", "knn"), array_size=3)
    assert [(a.stage, len(a.runs), a.after) for a in arrays] == [
        ("pretrain", 3, None), ("pretrain", 3, None), ("pretrain", 1, None),
        ("knn", 3, 0), ("knn", 3, 1), ("knn", 1, 2)]
    for a in arrays[3:]:  # task i of a knn array is the run of task i of its pretrain array
        assert a.runs == arrays[a.after].runs


def test_downstream_of_done_pretraining_has_nodependency():
    runs = _runs(4)
    arrays = plan_arrays({"pretrain": runs[:1], "knn": runs, "supervised": runs[2:]},
                         ("pretrain", "knn", "supervised"), array_size=10)
    assert [(a.stage, [r.run_id for r in a.runs], a.after) for a in arrays] == [
        ("pretrain", ["r00"], None), ("knn", ["r00"], 0), ("knn", ["r01", "r02", "r03"], None),
        ("supervised", ["r02", "r03"], None)]


def test_dependency_strings():
    arrays = [Array("pretrain", tuple(_runs(2))), Array("knn", tuple(_runs(2)), after=0),
              Array("pretrain", tuple(_runs(1))), Array("knn", tuple(_runs(1)), after=2)]
    submitted = [["41_0", "41_1"], ["42_0", "42_1"], ["43"], ["44"]]
    assert dependency_of(submitted, arrays[1]) == "aftercorr:41"
    assert dependency_of(submitted, arrays[3]) == "afterok:43"  # a single run is a plain job
    assert dependency_of(submitted, arrays[0]) is None


@pytest.mark.parametrize(("marker", "sched", "job", "state"), [
    ("done", "RUNNING", "1_0", "done"),          # the marker wins: no scheduler answer needed
    ("failed", None, "1_0", "failed"),
    (None, None, None, "missing"),
    (None, "PENDING", "1_0", "queued"),
    (None, "REQUEUED", "1_0", "queued"),
    (None, "RUNNING", "1_0", "running"),
    ("preempted", "RUNNING", "1_0", "running"),
    (None, "CANCELLED", "1_0", "cancelled"),
    (None, "TIMEOUT", "1_0", "failed"),
    (None, "COMPLETED", "1_0", "failed"),        # ended without writing a done result
    (None, None, "1_0", "lost"),
])
def test_state_classification(marker, sched, job, state):
    assert classify(marker, sched, job)[0] == state


def test_a_job_accounting_has_not_seen_yet_is_queued():
    assert classify(None, None, "1_0", age_s=5.0)[0] == "queued"


def test_a_task_of_an_array_cancelled_before_it_split_takes_the_array_state():
    """What sacct printed on the local cluster for two arrays cancelled while pending: one split, one not."""
    from submitit.slurm.slurm import SlurmInfoWatcher

    text = "JobID|State\n263|CANCELLED by 0\n264_0|CANCELLED by 0\n264_[1-2]|PENDING\n"
    states = {j: f["State"].split()[0] for j, f in SlurmInfoWatcher().read_info(text).items()}
    assert [task_state(states, j) for j in ("263_0", "263_1", "264_0", "264_2", "265_0", "263")] == [
        "CANCELLED", "CANCELLED", "CANCELLED", "PENDING", None, "CANCELLED"]


def test_manifest_append_and_torn_line(tmp_path):
    folder = rundir.SweepFolder(tmp_path, "s")
    rundir.append_manifest(folder, [{"run_id": "a", "stage": "pretrain", "job_id": "1_0"}])
    rundir.append_manifest(folder, [{"run_id": "a", "stage": "pretrain", "job_id": "2_0"}])
    with open(folder.manifest, "a") as f:
        f.write('{"run_id": "b", "sta')  # a writer killed mid-line
    latest = rundir.latest_submissions(folder)
    assert list(latest) == [("a", "pretrain")] and latest[("a", "pretrain")]["job_id"] == "2_0"


def test_atomic_json_leaves_no_temp_files(tmp_path):
    atomic_write_json(tmp_path / "x" / "result.json", {"status": "done"})
    assert json.loads((tmp_path / "x" / "result.json").read_text()) == {"status": "done"}
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["result.json"]


@pytest.mark.parametrize("cluster", ["local", "dcu128"])
def test_resolved_runs_keep_the_sweep_run_ids_and_apply_the_profile(cluster):
    """Folders keep the sweep's run ids (mst-report finds them); the config is the one the cluster runs."""
    from jobs.plan import config_overrides, resolve_runs
    from jobs.sweep import load_sweep
    from mst.config import apply_overrides, config_to_dict

    profile = load_profile(cluster)
    sweep = load_sweep("loss_weight_smoke")
    runs = resolve_runs(sweep, profile)
    assert [r.run_id for r in runs] == [s.run_id for s in sweep.expand()]
    for run in runs:
        cfg = apply_overrides(run.spec.config, config_overrides(profile, run.spec.config.data.name))
        assert cfg == run.config and config_to_dict(cfg) == run.config_dict  # per-cell shortcut is exact
        assert cfg.train.precision == profile.environment.precision


def test_a_manifest_entry_is_typed_once_and_reads_back(tmp_path):
    """Slurm and local submissions write the same typed entry; the manifest reader takes it as written."""
    from jobs import rundir
    from jobs.plan import resolve_runs
    from jobs.rundir import ManifestEntry
    from jobs.sweep import load_sweep

    run = resolve_runs(load_sweep("loss_weight_smoke"), load_profile("dcu128"))[1]
    entry = ManifestEntry.of(run, "knn", "41_1", "dcu128", "aftercorr:40").encode()
    assert list(entry) == ["run_id", "stage", "job_id", "cluster", "dependency", "repeat", "cell"]
    assert entry["cell"] == run.spec.cell and entry["repeat"] == run.spec.repeat
    folder = rundir.SweepFolder(tmp_path, "s")
    rundir.append_manifest(folder, [entry])
    (line,) = rundir.read_manifest(folder)
    assert "time" in line and {k: v for k, v in line.items() if k != "time"} == entry


def test_a_run_folder_of_another_config_stops_the_submission(tmp_path):
    from jobs.launcher import LaunchError
    from jobs.plan import resolve_runs
    from jobs.rundir import write_run_configs
    from jobs.sweep import load_sweep

    sweep = load_sweep("loss_weight_smoke")
    folder = rundir.SweepFolder(tmp_path, sweep.name)
    write_run_configs(resolve_runs(sweep, load_profile("local")), folder, "local")
    before = {p: p.read_text() for p in tmp_path.glob("*/*/config.yaml")}
    with pytest.raises(LaunchError, match="holds another config than cluster 'dcu128'"):
        write_run_configs(resolve_runs(sweep, load_profile("dcu128")), folder, "dcu128")  # fp16 != fp32
    assert {p: p.read_text() for p in tmp_path.glob("*/*/config.yaml")} == before


def test_a_run_has_one_identity_the_hash_its_run_id_carries(tmp_path):
    """On a cluster that changes the config (dcu128: fp16), the record still names the run by the hash of its
    run id, and holds the config that ran."""
    from jobs.plan import resolve_runs
    from jobs.stage_job import stage_job
    from jobs.sweep import load_sweep
    from mst.config import config_hash

    profile = load_profile("dcu128")
    run = resolve_runs(load_sweep("loss_weight_smoke"), profile)[0]
    identity = run.run_id.rsplit("-r", 1)[0]
    assert config_hash(run.config) != identity and config_hash(run.spec.config) == identity
    with pytest.raises(Exception):  # noqa: B017 - no pretrain checkpoint: whatever the method raises
        stage_job(run, "knn", profile, tmp_path)()
    record = json.loads((tmp_path / run.spec.sweep / run.run_id / "knn" / "result.json").read_text())
    assert record["status"] == "failed" and record["run_id"] == run.run_id
    assert record["config_hash"] == identity and record["config"] == run.config_dict


def test_a_failing_stage_leaves_a_usable_failed_record_and_the_handlers(tmp_path):
    """In-process (cluster local): a stage that fails writes a failed result.json that analysis accepts, and
    the caller gets its signal handlers back."""
    import signal

    from analysis.collect import check_record
    from jobs.config_io import load_config
    from jobs.stage_job import StageJob
    from mst.config import config_to_dict

    extra = {"run_id": "abc-r0", "sweep": "s", "cell": {}, "repeat": 0, "seed": 0, "cluster": "local"}
    job = StageJob("knn", runs_root=str(tmp_path), sweep="s", run_id="abc-r0",
                   config=config_to_dict(load_config("tiny")), extra=extra)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)}
    with pytest.raises(Exception):  # noqa: B017 - no pretrain checkpoint: whatever the method raises
        job()
    assert {s: signal.getsignal(s) for s in before} == before
    record = json.loads((tmp_path / "s" / "abc-r0" / "knn" / "result.json").read_text())
    assert record["status"] == "failed" and record["error"]
    assert check_record(record, "s", "abc-r0", "knn") is None
