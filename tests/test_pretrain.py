"""Pre-training end to end on real Fashion-MNIST: resume to the bit, kill + rerun, failures, DDP over gloo."""

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
from helpers.ddp import pretrain_on_two_ranks

from jobs.config_io import load_config
from mst.checkpoint import load_checkpoint
from mst.train import Interrupted, RunFolderMismatch, run_pretrain
from mst.train.pretrain import gradient_norms

torch.set_num_threads(1)
# 8 steps (4 per epoch), checkpoints every 3 steps and at epoch ends
SHORT = ["data.train_subset=128", "train.batch_size=32", "train.epochs=2", "train.checkpoint_every=3"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return run_pretrain(load_config("tiny", SHORT), tmp_path_factory.mktemp("full"), show_progress=False)


def test_result_record(uninterrupted):
    r = uninterrupted
    assert r["status"] == "done" and r["stage"] == "pretrain" and r["schema"] == 1
    assert r["metrics"]["steps"] == 8 and len(r["weights_sha256"]) == 64
    assert set(r["metrics"]) >= {"loss", "loss_dino", "loss_rec"}
    assert r["config"]["loss"]["restore_weight"] == 0.6


def test_stop_flag_mid_epoch_then_resume_is_bitwise_identical(tmp_path, uninterrupted):
    cfg = load_config("tiny", SHORT)
    calls = {"n": 0}

    def stop_after_five():
        calls["n"] += 1
        return calls["n"] > 5            # polled before each step: stops after step 5 (mid-epoch 2)
    with pytest.raises(Interrupted):
        run_pretrain(cfg, tmp_path, should_stop=stop_after_five, show_progress=False)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 5
    resumed = run_pretrain(cfg, tmp_path, show_progress=False)
    assert resumed["weights_sha256"] == uninterrupted["weights_sha256"]
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))   # no step logged twice after the resume


def test_kill_mid_run_and_rerun_the_command(tmp_path, uninterrupted):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "jobs.cli.pretrain", "--preset", "tiny", "--out", str(out), "--quiet"]
    for s in SHORT:
        cmd += ["--set", s]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:       # kill once the step-3 checkpoint exists, i.e. mid-run
        if (out / "checkpoint.pt").exists():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "result.json").exists(), "killed too late: the run had finished"
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout.splitlines()[-1])["weights_sha256"] == uninterrupted["weights_sha256"]
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert "is already done" in again.stdout


def test_non_finite_loss_fails_with_the_step_and_keeps_the_checkpoint(tmp_path):
    cfg = load_config("tiny", SHORT)
    with pytest.raises(Interrupted):
        run_pretrain(cfg, tmp_path, should_stop=iter([False] * 3 + [True]).__next__, show_progress=False)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    bad = load_config("tiny", [*SHORT, "optim.lr=1e30", "optim.warmup_epochs=0", "optim.clip_grad=0"])
    # same folder, other config: refused in one line before anything is touched
    with pytest.raises(RunFolderMismatch, match="holds a run of another config"):
        run_pretrain(bad, tmp_path, show_progress=False)
    fresh = tmp_path / "diverging"
    with pytest.raises(Exception, match=r"non-finite loss .* at step \d+"):
        run_pretrain(bad, fresh, show_progress=False)
    record = json.loads((fresh / "result.json").read_text())
    assert record["status"] == "failed" and "at step" in record["error"]
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def test_gradient_norms_by_hand():
    w = torch.tensor([3.0, 4.0], requires_grad=True)
    unused = torch.zeros(2, requires_grad=True)
    half_square = (w * w).sum() / 2           # gradient w = (3, 4): norm 5
    linear = 3 * w.sum()                      # gradient (3, 3): norm sqrt(18)
    rec, dino = gradient_norms([half_square, linear], [w, unused])
    assert rec == pytest.approx(5.0) and dino == pytest.approx(math.sqrt(18))
    assert w.grad is None                     # the step's own backward still starts from nothing


def test_loss_balance_is_logged_and_recorded_without_changing_the_run(tmp_path, uninterrupted):
    measured = run_pretrain(load_config("tiny", [*SHORT, "train.balance_every=3"]), tmp_path / "m",
                            show_progress=False)
    # measuring takes gradients aside: the weights are those of the run measured only at its last step
    assert measured["weights_sha256"] == uninterrupted["weights_sha256"]
    lines = [json.loads(ln) for ln in (tmp_path / "m" / "metrics.jsonl").read_text().splitlines()]
    assert [ln["step"] for ln in lines if "balance_step" in ln] == [3, 6, 8]    # every 3 steps and the last
    m = measured["metrics"]
    assert m["balance_step"] == 8 and m["grad_norm_rec"] > 0 and m["grad_norm_dino"] > 0
    assert m["grad_ratio_rec_dino"] == pytest.approx(m["grad_norm_rec"] / m["grad_norm_dino"])
    assert uninterrupted["metrics"]["grad_ratio_rec_dino"] == pytest.approx(m["grad_ratio_rec_dino"])
    dino_only = run_pretrain(load_config("tiny", [*SHORT, "loss.restore_weight=0", "mask.strategy=none"]),
                             tmp_path / "dino", show_progress=False)
    assert "grad_norm_rec" not in dino_only["metrics"] and dino_only["metrics"]["loss_rec"] == 0.0


@pytest.mark.slow
def test_two_process_gloo_ddp_step_equals_single_process(tmp_path):
    # one epoch of 2 steps on a global batch of 32; no randomness that depends on the rank, and no BatchNorm
    # (SyncBatchNorm is GPU-only in torch, so gloo ranks normalise over their own half of the batch)
    sets = ["data.train_subset=64", "train.batch_size=32", "train.epochs=1", "model.drop_path=0.0",
            "decoder.norm=none",
            "mask.prob=1.0", "optim.warmup_epochs=0", "train.checkpoint_every=100"]
    single = run_pretrain(load_config("tiny", sets), tmp_path / "single", show_progress=False)
    ddp = pretrain_on_two_ranks(tmp_path / "ddp", sets)
    assert ddp["world_size"] == 2 and single["world_size"] == 1
    # the same losses up to float summation order, and the same weights within 2 x lr (Adam's first steps
    # move each weight by about lr, whatever the gradient's size, so tiny gradient differences can flip it)
    assert ddp["metrics"]["loss"] == pytest.approx(single["metrics"]["loss"], rel=1e-5)
    a = load_checkpoint(tmp_path / "single/checkpoint.pt")["student"]
    b = load_checkpoint(tmp_path / "ddp/checkpoint.pt")["student"]
    lr = 5e-4 * 32 / 256
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst <= 2 * lr
    mean_diff = sum((a[k].float() - b[k].float()).abs().sum().item() for k in a) / sum(v.numel() for v in a.values())
    assert mean_diff < 1e-6


def test_a_process_group_the_caller_set_up_is_left_for_the_caller(tmp_path):
    # run_pretrain destroys only a group it initialised itself (the DDP test checks that one is ended)
    import torch.distributed as tdist

    tdist.init_process_group("gloo", store=tdist.HashStore(), rank=0, world_size=1)
    try:
        record = run_pretrain(load_config("tiny", ["data.train_subset=32", "train.batch_size=32", "train.epochs=1"]),
                              tmp_path / "run", show_progress=False)
        assert record["status"] == "done" and record["world_size"] == 1
        assert tdist.is_initialized()
    finally:
        if tdist.is_initialized():
            tdist.destroy_process_group()
