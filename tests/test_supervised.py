"""Supervised baseline: result record, bitwise resume mid-epoch, and the backbone the attention maps load."""

import json

import pytest
import torch

from jobs.config_io import load_config
from mst.checkpoint import load_checkpoint
from mst.eval.supervised import load_supervised, run_supervised
from mst.train import Interrupted

SETS = ["train.threads=1", "data.train_subset=128", "data.test_subset=64", "eval.supervised_epochs=2",
        "eval.supervised_batch_size=32", "eval.supervised_lr=1e-3", "train.checkpoint_every=3"]


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("supervised")
    return out, run_supervised(load_config("tiny", SETS), out, show_progress=False)


def test_record_and_metrics(whole):
    out, record = whole
    assert record["status"] == "done" and record["stage"] == "supervised"
    assert set(record["metrics"]) == {"top1_best", "top5_best", "top1_last", "top5_last", "best_epoch"}
    assert len(record["history"]) == 2
    assert json.loads((out / "result.json").read_text())["metrics"] == record["metrics"]
    losses = [line["loss"] for line in record["history"]]
    assert all(0 < x < 10 for x in losses)
    assert record["weights_sha256"] == load_checkpoint(out / "checkpoint.pt")["weights_sha256"]


def test_stop_mid_epoch_then_resume_is_bitwise_identical(whole, tmp_path):
    out, record = whole
    polls = {"n": 0}

    def stop_at_step_five():
        polls["n"] += 1
        return polls["n"] == 6  # polled before each step: the sixth poll comes after five steps

    with pytest.raises(Interrupted) as stopped:
        run_supervised(load_config("tiny", SETS), tmp_path, should_stop=stop_at_step_five, show_progress=False)
    assert stopped.value.step == 5
    resumed = run_supervised(load_config("tiny", SETS), tmp_path, show_progress=False)
    assert resumed["metrics"] == record["metrics"] and resumed["history"] == record["history"]
    assert resumed["weights_sha256"] == record["weights_sha256"]
    a, b = load_checkpoint(out / "checkpoint.pt")["model"], load_checkpoint(tmp_path / "checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_backbone_for_attention_maps(whole):
    out, _ = whole
    backbone, cfg = load_supervised(out)
    assert cfg.model.arch == "vit_test" and not backbone.training
    att = backbone(torch.zeros(1, 3, 32, 32), return_attn=True).attn
    assert att.shape == (1, backbone.num_heads, (32 // backbone.patch_size) ** 2)
    with pytest.raises(FileNotFoundError, match="checkpoint.pt"):
        load_supervised(out / "missing")


def test_a_checkpoint_saving_only_torchs_stream_still_resumes_bit_exact(whole, tmp_path):
    """Supervised checkpoints written before the RNG state was shared with pre-training hold torch's (and
    CUDA's) streams only; they load and resume to the same weights."""
    from mst.checkpoint import atomic_torch_save

    _, record = whole
    polls = {"n": 0}

    def stop_at_step_five():
        polls["n"] += 1
        return polls["n"] == 6

    with pytest.raises(Interrupted):
        run_supervised(load_config("tiny", SETS), tmp_path, should_stop=stop_at_step_five, show_progress=False)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    state["rng"] = {k: v for k, v in state["rng"].items() if k in ("torch", "cuda")}
    atomic_torch_save(state, tmp_path / "checkpoint.pt")
    resumed = run_supervised(load_config("tiny", SETS), tmp_path, show_progress=False)
    assert resumed["weights_sha256"] == record["weights_sha256"] and resumed["history"] == record["history"]
