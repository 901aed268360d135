"""The learning curve (eval.curve_steps): k-NN points at the named steps, in metrics.jsonl and the record, without
changing the run, and the same after a resume. Real tiny pre-trainings on Fashion-MNIST."""

import json

import pytest
import torch
from helpers.ddp import pretrain_on_two_ranks

from jobs.config_io import load_config
from mst.checkpoint import load_checkpoint
from mst.config import ConfigError, config_hash
from mst.eval.baselines import initial_backbone
from mst.train import Interrupted, run_pretrain
from mst.train.curve import CurveProbe

torch.set_num_threads(1)
# 8 steps (4 per epoch), checkpoints every 3 steps and at epoch ends; the tiny preset's drop path draws from the
# global torch stream at every student forward, so an evaluation that drew from it would change the weights
SHORT = ["data.train_subset=128", "train.batch_size=32", "train.epochs=2", "train.checkpoint_every=3"]
CURVE = [*SHORT, "eval.curve_steps=[0,2,5,8]", "eval.curve_subset=[200,100]"]


def curve_lines(folder) -> list[dict]:
    lines = [json.loads(ln) for ln in (folder / "metrics.jsonl").read_text().splitlines()]
    return [ln for ln in lines if "curve" in ln]


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return run_pretrain(load_config("tiny", SHORT), tmp_path_factory.mktemp("plain"), show_progress=False)


@pytest.fixture(scope="module")
def with_curve(tmp_path_factory):
    out = tmp_path_factory.mktemp("curve")
    return out, run_pretrain(load_config("tiny", CURVE), out, show_progress=False)


def test_curve_points_at_the_named_steps_in_the_log_and_the_record(with_curve):
    out, record = with_curve
    lines = curve_lines(out)
    assert [ln["step"] for ln in lines] == [0, 2, 5, 8]
    assert [p["step"] for p in record["curve"]] == [0, 2, 5, 8]
    for line, point in zip(lines, record["curve"]):
        assert set(line["curve"]) == {"top1@10", "top5@10", "top1@20", "top5@20"}
        assert {k: v for k, v in point.items() if k != "step"} == line["curve"]
        assert 0 <= line["curve"]["top1@10"] <= 100


def test_step_zero_is_the_random_initialisation(with_curve):
    _, record = with_curve
    cfg = load_config("tiny", CURVE)
    probe = CurveProbe(cfg, torch.device("cpu"))
    assert len(probe.train_y) == 200 and len(probe.test_y) == 100
    assert probe.evaluate(initial_backbone(cfg)) == {k: v for k, v in record["curve"][0].items() if k != "step"}


def test_the_curve_does_not_change_the_run(with_curve, plain):
    _, record = with_curve
    assert record["weights_sha256"] == plain["weights_sha256"]
    assert record["metrics"]["loss"] == plain["metrics"]["loss"]
    assert "curve" not in plain


@pytest.mark.parametrize("stop_after", [0, 5])   # before the first step; mid-epoch 2, after the step-5 point
def test_a_resumed_run_writes_the_same_curve(tmp_path, with_curve, stop_after):
    out, record = with_curve
    cfg = load_config("tiny", CURVE)
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] > stop_after    # polled before each step
    with pytest.raises(Interrupted):
        run_pretrain(cfg, tmp_path, should_stop=stop, show_progress=False)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == stop_after
    resumed = run_pretrain(cfg, tmp_path, show_progress=False)
    assert resumed["curve"] == record["curve"]
    assert curve_lines(tmp_path) == curve_lines(out)
    assert resumed["weights_sha256"] == record["weights_sha256"]


def test_a_run_killed_before_its_first_checkpoint_keeps_no_stale_point(tmp_path, with_curve):
    out, record = with_curve
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 0, "epoch": 0, "curve": {"top1@10": 1.0}}) + "\n")
    resumed = run_pretrain(load_config("tiny", CURVE), tmp_path, show_progress=False)
    assert curve_lines(tmp_path) == curve_lines(out) and resumed["curve"] == record["curve"]


def test_off_by_default_and_in_the_presets_on_in_the_method_sweep_and_checked():
    from jobs.sweep import load_sweep
    from mst.config import Config

    assert Config().eval.curve_steps == () and load_config("paper", []).eval.curve_steps == ()
    assert load_config("smoke", []).eval.curve_steps == ()  # smoke run ids stay as they were
    method = load_sweep("method", budget="smoke")
    smoke = load_config("smoke", [f"{k}={v}" for k, v in method.overrides.items()])
    steps_per_epoch = smoke.data.train_subset // smoke.train.batch_size
    assert smoke.eval.curve_steps == tuple(range(0, smoke.train.epochs * steps_per_epoch + 1, steps_per_epoch // 2))
    assert config_hash(load_config("tiny", ["eval.curve_subset=[2000,1000]"])) == config_hash(load_config("tiny", []))
    with pytest.raises(ConfigError, match="eval.curve_steps"):
        load_config("tiny", ["eval.curve_steps=[0,-1]"])
    with pytest.raises(ConfigError, match="eval.curve_subset"):
        load_config("tiny", ["eval.curve_subset=[0,100]"])


def test_two_process_gloo_ddp_logs_each_point_once(tmp_path):
    sets = ["data.train_subset=64", "train.batch_size=32", "train.epochs=1", "model.drop_path=0.0",
            "decoder.norm=none", "eval.curve_steps=[0,2]", "eval.curve_subset=[200,100]"]
    single = run_pretrain(load_config("tiny", sets), tmp_path / "single", show_progress=False)
    ddp = pretrain_on_two_ranks(tmp_path / "ddp", sets)
    assert ddp["world_size"] == 2
    assert [ln["step"] for ln in curve_lines(tmp_path / "ddp")] == [0, 2]    # rank 0 writes, once a step
    assert ddp["curve"][0] == single["curve"][0]                            # the same initial weights
    assert [p["step"] for p in ddp["curve"]] == [0, 2]
