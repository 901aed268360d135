"""Hostile inputs and faults against the method side: planted and damaged checkpoints, kills at fsync and
rename, torn logs, two processes on one stage folder, unfinished pre-trainings, non-finite values, and user
errors that must end in one line, a non-zero exit and nothing overwritten."""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from jobs.config_io import load_config
from mst.config import ConfigError
from mst.train import Interrupted, run_pretrain

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
# 8 steps (4 per epoch), checkpoints at steps 3, 4, 6 and 8, a metrics line every step
SHORT = ["data.train_subset=128", "train.batch_size=32", "train.epochs=2", "train.checkpoint_every=3",
         "train.log_every=1", "train.threads=1"]
TWO_STEPS = ["train.epochs=1", "data.train_subset=64", "train.threads=1"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}


# ---------------------------------------------------------------------------------------------- helpers
def sets(items: list[str]) -> list[str]:
    return [a for s in items for a in ("--set", s)]


def pretrain_cmd(out: Path, extra: list[str] = ()) -> list[str]:
    return [sys.executable, "-m", "jobs.cli.pretrain", "--preset", "tiny", "--out", str(out), "--quiet",
            *sets([*SHORT, *extra])]


def run(cmd: list[str], timeout: float = 300, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=ENV, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def assert_one_line_error(stderr: str, code: int, expected: str) -> str:
    """A non-zero exit, no traceback, exactly one `error:` line, holding `expected`."""
    assert code != 0, stderr
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, stderr[-3000:]
    assert expected in errors[0], errors[0]
    return errors[0]


def with_fault(target: str, nth: int, action: str, cli_args: list[str]) -> list[str]:
    """A command that runs mst-pretrain with os.<target> patched: on its `nth` call for a temp file of
    checkpoint.pt the process SIGKILLs itself (`kill`) or the call fails with ENOSPC / EROFS."""
    code = f"""
import errno, os, signal, sys
real = getattr(os, {target!r})
calls = {{"n": 0}}

def name_of(arg):
    try:
        return os.readlink(f"/proc/self/fd/{{arg}}") if isinstance(arg, int) else str(arg)
    except OSError:
        return ""

def patched(*args, **kwargs):
    if os.path.basename(name_of(args[0])).startswith(".checkpoint.pt."):
        calls["n"] += 1
        if calls["n"] == {nth}:
            if {action!r} == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            code = errno.ENOSPC if {action!r} == "enospc" else errno.EROFS
            raise OSError(code, os.strerror(code))
    return real(*args, **kwargs)

setattr(os, {target!r}, patched)
from jobs.cli.pretrain import main
main({cli_args!r})
"""
    return [sys.executable, "-c", code]


def metric_steps(folder: Path) -> list[int]:
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [json.loads(ln)["step"] for ln in lines if ln.strip()]


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(".*.tmp"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    return run_pretrain(load_config("tiny", SHORT), tmp_path_factory.mktemp("full"), show_progress=False)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    """A finished two-step pre-training: the checkpoint the evaluation tests read."""
    out = tmp_path_factory.mktemp("pretrained")
    run_pretrain(load_config("tiny", TWO_STEPS), out, show_progress=False)
    return out


class Payload:
    """Unpickling this creates `marker`: what a planted checkpoint would do with a real payload."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


# ---------------------------------------------------------------------------------- 1. code execution
@pytest.mark.parametrize("how", ["eval_reads_stored_config", "eval_of_finished_folder", "resume"])
def test_planted_pickle_is_refused_without_running(tmp_path, pretrained, how):
    marker = tmp_path / "payload_ran"
    folder = tmp_path / "planted"
    folder.mkdir()
    if how == "eval_of_finished_folder":  # a finished pre-training whose checkpoint was swapped
        (folder / "result.json").write_text((pretrained / "result.json").read_text())
    buf = io.BytesIO()
    torch.save({"config": {}, "teacher": Payload(marker), "student": {}}, buf)
    (folder / "checkpoint.pt").write_bytes(buf.getvalue())
    if how == "resume":
        proc = run(pretrain_cmd(folder))
    else:
        preset = ["--preset", "tiny"] if how == "eval_of_finished_folder" else []
        proc = run([sys.executable, "-m", "jobs.cli.evaluate", "knn", "--checkpoint", str(folder), *preset,
                    "--out", str(tmp_path / "knn"), "--quiet"])
    assert not marker.exists(), "the checkpoint's pickle payload ran"
    assert_one_line_error(proc.stderr, proc.returncode, "checkpoint.pt is not a checkpoint this toolkit wrote")
    assert (folder / "checkpoint.pt").read_bytes() == buf.getvalue()


@pytest.mark.parametrize("kind,expected", [
    ("text", "checkpoint.pt is not a"),
    ("truncated", "checkpoint.pt is "),
    ("foreign", "checkpoint.pt is not a checkpoint of this kind"),
    ("empty", "checkpoint.pt is not a"),
])
def test_damaged_or_foreign_checkpoint_is_one_line(tmp_path, pretrained, kind, expected):
    good = (pretrained / "checkpoint.pt").read_bytes()
    foreign = io.BytesIO()
    torch.save({"weights": torch.zeros(3)}, foreign)
    data = {"text": b"not a checkpoint\n", "truncated": good[: len(good) // 2], "foreign": foreign.getvalue(),
            "empty": b""}[kind]
    for name, cmd in (("eval", lambda d: [sys.executable, "-m", "jobs.cli.evaluate", "knn", "--checkpoint",
                                          str(d), "--out", str(tmp_path / "knn"), "--quiet"]),
                      ("resume", lambda d: pretrain_cmd(d, ["data.train_subset=64", "train.epochs=1"]))):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "checkpoint.pt").write_bytes(data)
        proc = run(cmd(folder))
        assert_one_line_error(proc.stderr, proc.returncode, expected)
        assert (folder / "checkpoint.pt").read_bytes() == data


# ------------------------------------------------------------------ 4. kills mid-write, torn logs
@pytest.mark.parametrize("target,nth", [("fsync", 2), ("replace", 2), ("replace", 1)])
def test_kill_at_fsync_or_rename_then_rerun_is_bit_exact(tmp_path, uninterrupted, target, nth):
    # nth=1: killed while writing the first checkpoint (step 3), after logging steps 1-3: the rerun starts
    # afresh and must not log those steps twice
    out = tmp_path / "run"
    killed = run(with_fault(target, nth, "kill", pretrain_cmd(out)[3:]))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert temp_files(out), "the fault did not hit a checkpoint write"
    rerun = run(pretrain_cmd(out))
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert json.loads(rerun.stdout.splitlines()[-1])["weights_sha256"] == uninterrupted["weights_sha256"]
    assert temp_files(out) == []
    assert metric_steps(out) == list(range(1, 9))


def test_torn_last_metrics_line_does_not_block_resume(tmp_path, uninterrupted):
    cfg = load_config("tiny", SHORT)
    with pytest.raises(Interrupted):
        run_pretrain(cfg, tmp_path, should_stop=iter([False] * 5 + [True]).__next__, show_progress=False)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "epoch": 1, "lo')  # an append cut short
    resumed = run_pretrain(cfg, tmp_path, show_progress=False)
    assert resumed["weights_sha256"] == uninterrupted["weights_sha256"]
    assert metric_steps(tmp_path) == list(range(1, 9))


def test_torn_last_line_of_a_probe_log_does_not_block_resume(tmp_path, pretrained):
    from mst.eval.linear import run_linear

    cfg = load_config("tiny", ["train.threads=1", "eval.linear_epochs=2", "eval.linear_batch_size=64",
                               "eval.feature_batch_size=32", "train.checkpoint_every=3"])
    whole = run_linear(cfg, pretrained, tmp_path / "whole", cached_features=True, show_progress=False)
    polls = {"n": 0}

    def stop_in_epoch_2():
        polls["n"] += 1
        return polls["n"] == 7  # 4 batches an epoch: the 3rd batch of epoch 2, after one epoch line
    parts = tmp_path / "parts"
    with pytest.raises(Interrupted):
        run_linear(cfg, pretrained, parts, cached_features=True, should_stop=stop_in_epoch_2, show_progress=False)
    with open(parts / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "top1": 1')
    resumed = run_linear(cfg, pretrained, parts, cached_features=True, show_progress=False)
    assert resumed["metrics"] == whole["metrics"]
    assert [json.loads(ln)["epoch"] for ln in (parts / "metrics.jsonl").read_text().splitlines()] == [1, 2]


# ------------------------------------------------------------------------------- 8. one folder, two runs
def test_second_process_on_a_stage_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen(pretrain_cmd(out, ["train.epochs=200"]), env=ENV, cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (out / "metrics.jsonl").is_file() and time.time() < deadline:
            time.sleep(0.1)
        assert first.poll() is None, "the first run ended early"
        second = run(pretrain_cmd(out, ["train.epochs=200"]), timeout=120)
        line = assert_one_line_error(second.stderr, second.returncode, f"stage folder {out} is in use by ")
        assert f"pid {first.pid} on host " in line
        assert first.poll() is None
    finally:
        first.kill()
        first.wait()


def test_an_evaluation_folder_in_use_is_refused_before_anything_is_written(tmp_path, pretrained):
    from mst.eval.knn_stage import run_knn
    from mst.run.folder import StageFolderBusy, locked_stage_folder

    out = tmp_path / "knn"
    busy = pytest.raises(StageFolderBusy, match=f"stage folder {out} is in use by pid {os.getpid()}")
    with locked_stage_folder(out), busy:
        run_knn(load_config("tiny", ["train.threads=1"]), pretrained, out, show_progress=False)
    assert sorted(p.name for p in out.iterdir()) == [".lock"]


# --------------------------------------------------------------------- 7. unfinished pre-trainings
def test_evaluating_an_unfinished_pretraining_is_refused_or_labelled_partial(tmp_path, capsys):
    from jobs.cli.evaluate import main

    pre = tmp_path / "pre"
    with pytest.raises(Interrupted):
        run_pretrain(load_config("tiny", TWO_STEPS), pre, should_stop=iter([False, True]).__next__,
                     show_progress=False)
    args = ["knn", "--checkpoint", str(pre), "--out", str(tmp_path / "knn"), "--quiet"]
    with pytest.raises(SystemExit) as refused:
        main(args)
    assert_one_line_error(capsys.readouterr().err, refused.value.code, f"pre-training in {pre} has not finished")
    assert not (tmp_path / "knn" / "result.json").exists()
    with pytest.raises(SystemExit) as partial:
        main([*args, "--allow-partial"])
    assert partial.value.code == 0
    record = json.loads((tmp_path / "knn" / "result.json").read_text())
    assert record["partial"] is True and record["pretrain_status"] == "unfinished"


# ------------------------------------------------------------------------------ 9. non-finite values
@pytest.mark.parametrize("item", ["optim.lr=.inf", "optim.lr=1e999", "optim.clip_grad=.inf",
                                  "augment.blur_sigma=[0.1,.inf]", "augment.mean=[.nan,0.3,0.3]",
                                  "eval.knn_temperature=.inf"])
def test_non_finite_config_values_are_refused(item):
    with pytest.raises(ConfigError, match=r"expected a finite number"):
        load_config("tiny", [item])


def test_a_probe_with_a_non_finite_loss_fails(tmp_path, pretrained):
    from mst.eval.linear import run_linear
    from mst.train import NonFiniteLoss

    cfg = load_config("tiny", ["train.threads=1", "eval.linear_epochs=1", "eval.linear_lr=1e38"])
    with pytest.raises(NonFiniteLoss, match="non-finite probe loss"):
        run_linear(cfg, pretrained, tmp_path, cached_features=True, show_progress=False)
    record = json.loads((tmp_path / "result.json").read_text())
    assert record["status"] == "failed" and "non-finite" in record["error"]


def test_non_finite_metrics_are_marked_not_averaged():
    from analysis.render import ours
    from analysis.stats import compare, summarize

    s = summarize([70.0, math.nan, 72.0, math.inf])
    assert (s.mean, s.n, s.non_finite) == (71.0, 2, 2) and s.se == pytest.approx(1.0)
    cell = type("Cell", (), {"final": True, "summary": s})()
    assert ours(cell) == "71.00 \u00b1 1.00 (n=2; 2 of 4 non-finite)"
    cell.summary = summarize([math.nan, math.nan])
    assert ours(cell) == "nan (2 of 2 non-finite)"
    # the t-test pairs only the seeds with finite values in both rows
    t = compare({0: 1.0, 1: 2.0, 2: math.nan, 3: 4.0}, {0: 0.0, 1: 1.5, 2: 9.0, 3: 2.0})
    assert t is not None and math.isfinite(t.t) and t.df == 2


# ---------------------------------------------------------------------- 10. user errors: one line
@pytest.mark.parametrize("case", ["out_is_a_file", "out_is_empty", "seed_too_large", "batch_larger_than_data",
                                  "absurd_out_dim"])
def test_user_errors_are_one_line_and_write_nothing(tmp_path, monkeypatch, capsys, case):
    from jobs.cli.pretrain import main

    monkeypatch.chdir(tmp_path)  # an empty --out must not train into the current folder
    target = tmp_path / "out"
    extra, expected = {
        "out_is_a_file": ([], "is a file, not a folder"),
        "out_is_empty": ([], "stage folder name is empty"),
        "seed_too_large": (["train.seed=9223372036854775808"], "train.seed"),
        "batch_larger_than_data": (["train.batch_size=4096"], "train.batch_size': 4096 exceeds the 128"),
        "absurd_out_dim": (["model.out_dim=10000000000"], "model.out_dim"),
    }[case]
    if case == "out_is_a_file":
        target.write_text("keep me\n")
    out = "" if case == "out_is_empty" else str(target)
    with pytest.raises(SystemExit) as done:
        main(["--preset", "tiny", "--out", out, "--quiet", *sets([*SHORT, *extra])])
    assert_one_line_error(capsys.readouterr().err, done.value.code, expected)
    if case == "out_is_a_file":
        assert target.read_text() == "keep me\n"
    elif case == "batch_larger_than_data":  # refused with a record saying why, no checkpoint
        assert not (target / "checkpoint.pt").exists()
    else:
        assert sorted(os.listdir(tmp_path)) == []


def test_evaluation_out_that_is_a_file_is_one_line(tmp_path, pretrained, capsys):
    from jobs.cli.evaluate import main

    target = tmp_path / "out"
    target.write_text("keep me\n")
    with pytest.raises(SystemExit) as done:
        main(["knn", "--checkpoint", str(pretrained), "--out", str(target), "--quiet"])
    assert_one_line_error(capsys.readouterr().err, done.value.code, "is a file, not a folder")
    assert target.read_text() == "keep me\n"


@pytest.mark.parametrize("target,action,expected", [("fsync", "enospc", "No space left on device"),
                                                    ("replace", "erofs", "Read-only file system")])
def test_full_disk_or_read_only_folder_is_one_line_and_keeps_the_checkpoint(tmp_path, target, action, expected):
    out = tmp_path / "run"
    failed = run(with_fault(target, 2, action, pretrain_cmd(out)[3:]))
    assert_one_line_error(failed.stderr, failed.returncode, expected)
    assert temp_files(out) == []
    from mst.checkpoint import load_checkpoint

    assert load_checkpoint(out / "checkpoint.pt")["step"] == 3  # the first checkpoint, intact
    rerun = run(pretrain_cmd(out))
    assert rerun.returncode == 0, rerun.stderr[-2000:]


def test_ctrl_c_saves_at_the_next_step_and_the_rerun_is_bit_exact(tmp_path, uninterrupted):
    from mst.checkpoint import load_checkpoint

    out = tmp_path / "run"
    proc = subprocess.Popen(pretrain_cmd(out), env=ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert not (out / "result.json").exists(), "interrupted too late: the run had finished"
    line = assert_one_line_error(stderr, proc.returncode, "stopped by signal: interrupted at step")
    assert proc.returncode == 130
    step = int(line.split("interrupted at step ")[1].split(";")[0])
    assert load_checkpoint(out / "checkpoint.pt")["step"] == step
    rerun = run(pretrain_cmd(out))
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert json.loads(rerun.stdout.splitlines()[-1])["weights_sha256"] == uninterrupted["weights_sha256"]


def test_checkpoints_load_with_weights_only(pretrained, tmp_path):
    """Checkpoints hold tensors and plain values only (no numpy RNG arrays), so weights_only loads them."""
    state = torch.load(pretrained / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert state["step"] == 2 and isinstance(state["rng"]["numpy"]["key"], torch.Tensor)
