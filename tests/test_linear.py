"""Linear probes: feature widths, bitwise-identical resume (stopped in feature extraction and mid-epoch),
done folders not re-run, failures recorded."""

import json

import pytest
import torch

from jobs.config_io import load_config
from mst.checkpoint import load_checkpoint
from mst.config import ConfigError, ModelConfig
from mst.eval.epochs import epoch_batches, summarise
from mst.eval.features import embed, feature_dim
from mst.eval.linear import run_linear
from mst.eval.linear_probe import epoch_lr, make_probe
from mst.models import build_backbone
from mst.train import Interrupted, run_pretrain

PROBE_SETS = ["train.threads=1", "eval.linear_epochs=2", "eval.linear_batch_size=64",
              "eval.feature_batch_size=32", "train.checkpoint_every=3"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A real (two-step) pre-training of the tiny preset: the checkpoint the probes read."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("pretrain")
    run_pretrain(load_config("tiny", ["train.epochs=1", "data.train_subset=64", "train.threads=1"]), out,
                 show_progress=False)
    return out


def stop_at(poll):
    calls = {"n": 0}

    def should_stop():
        calls["n"] += 1
        return calls["n"] == poll
    return should_stop


def test_feature_widths_of_deit_small():
    backbone = build_backbone(ModelConfig(arch="deit_small"), 224, drop_path=0.0).eval()
    assert feature_dim(backbone, "cls") == 384
    assert feature_dim(backbone, "dino") == 1536
    with torch.no_grad():
        x = torch.randn(1, 3, 224, 224)
        cls, dino = embed(backbone, x, "cls"), embed(backbone, x, "dino")
    assert cls.shape == (1, 384) and dino.shape == (1, 1536)
    # the dino features end with the last block's final-norm class token: the cls features
    torch.testing.assert_close(dino[:, -384:], cls)


def test_schedule_and_order_helpers():
    assert epoch_lr(0.004, 0, 100) == pytest.approx(0.004)
    assert epoch_lr(0.004, 50, 100) == pytest.approx(0.002)
    batches = epoch_batches(10, 4, seed=3, epoch=1)
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(i for b in batches for i in b) == list(range(10))
    assert batches == epoch_batches(10, 4, seed=3, epoch=1)
    assert batches != epoch_batches(10, 4, seed=3, epoch=2)
    layer = make_probe(8, 3, seed=0)
    assert float(layer.bias.detach().abs().sum()) == 0.0 and 0.003 < float(layer.weight.detach().std()) < 0.03
    hist = [{"top1": 10.0, "top5": 50.0}, {"top1": 30.0, "top5": 60.0}, {"top1": 30.0, "top5": 70.0},
            {"top1": 20.0, "top5": 80.0}]
    assert summarise(hist) == {"top1_best": 30.0, "top5_best": 60.0, "top1_last": 20.0, "top5_last": 80.0,
                               "best_epoch": 2}


def test_batchnorm_probe_sees_standardised_features():
    # a shared offset and per-feature scales (what a class token carries) do not reach the linear layer
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    shifted = x * torch.linspace(0.1, 10.0, 8) + 100.0
    plain, normed = make_probe(8, 3, seed=0), make_probe(8, 3, seed=0, norm="batchnorm")
    assert torch.allclose(normed(x), normed(shifted), atol=1e-3)
    assert not torch.allclose(plain(x), plain(shifted), atol=1e-3)
    assert torch.equal(normed[1].weight, plain.weight)  # the same layer behind the norm
    with pytest.raises(ConfigError, match="eval.linear_norm"):
        load_config("tiny", ["eval.linear_norm=layernorm"])


# (poll that says stop, where it stops: samples extracted, then optimiser steps done; extra overrides)
@pytest.mark.parametrize("probe,cached,polls,sets", [
    ("dino", False, ((2, 32), (9, 5)), ()),
    ("cls", True, ((3, 64), (16, 5)), ()),
    ("cls", True, ((3, 64), (16, 5)), ("eval.linear_norm=batchnorm",)),
])
def test_resume_is_bitwise_identical(pretrained, tmp_path, probe, cached, polls, sets):
    cfg = load_config("tiny", PROBE_SETS + list(sets))
    whole = run_linear(cfg, pretrained, tmp_path / "whole", probe=probe, cached_features=cached,
                       show_progress=False)
    assert whole["status"] == "done"
    assert whole["mode"] == ("cached_features" if cached else "augmented")
    assert set(whole["metrics"]) == {"top1_best", "top5_best", "top1_last", "top5_last", "best_epoch"}
    assert whole["weights_sha256"] == json.loads((pretrained / "result.json").read_text())["weights_sha256"]

    parts = tmp_path / "parts"
    # first stop inside the test-feature extraction, then at step 5 (epoch 2, batch 2) of the training
    for poll, where in polls:
        with pytest.raises(Interrupted) as stopped:
            run_linear(cfg, pretrained, parts, probe=probe, cached_features=cached, should_stop=stop_at(poll),
                       show_progress=False)
        assert stopped.value.step == where
        assert (parts / "checkpoint.pt").is_file()
        assert not (parts / "result.json").exists()
    resumed = run_linear(cfg, pretrained, parts, probe=probe, cached_features=cached, show_progress=False)
    assert resumed["metrics"] == whole["metrics"]
    assert resumed["history"] == whole["history"]
    a = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")["linear"]
    b = load_checkpoint(parts / "checkpoint.pt")["linear"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert ("0.running_mean" in a) == bool(sets)  # the norm's statistics are saved and resumed too
    lines = [json.loads(ln) for ln in (parts / "metrics.jsonl").read_text().splitlines()]
    assert [ln["epoch"] for ln in lines] == [1, 2]
    assert not (parts / "features").exists()  # the feature cache is dropped once done


@pytest.mark.parametrize("sets, recipe, lr", [
    (["eval.linear_recipe=appendix", "eval.linear_lr=0"], "appendix", 0.00024),       # appendix §5 as printed
    (["eval.linear_recipe=dino", "eval.linear_lr=0"], "dino", 0.001 * 64 / 256),      # DINO's rule at batch 64
    ([], "custom", 0.05)])                                                            # the tiny preset's own
def test_probe_record_names_its_recipe_and_lr(pretrained, tmp_path, sets, recipe, lr):
    cfg = load_config("tiny", PROBE_SETS + ["eval.linear_epochs=1", *sets])
    record = run_linear(cfg, pretrained, tmp_path, probe="cls", cached_features=True, show_progress=False)
    assert record["recipe"] == recipe and record["lr"] == pytest.approx(lr)
    assert record["history"][0]["lr"] == pytest.approx(lr)    # epoch 0 of the cosine is the base lr


def test_done_folder_is_not_rerun(pretrained, tmp_path):
    cfg = load_config("tiny", PROBE_SETS + ["eval.linear_epochs=1"])
    first = run_linear(cfg, pretrained, tmp_path, probe="cls", cached_features=True, show_progress=False)
    stamp = (tmp_path / "result.json").stat().st_mtime_ns

    def must_not_run():
        raise AssertionError("a done stage polled should_stop")
    again = run_linear(cfg, pretrained, tmp_path, probe="cls", cached_features=True, should_stop=must_not_run)
    assert again == first and (tmp_path / "result.json").stat().st_mtime_ns == stamp


def test_missing_checkpoint_writes_a_failed_record(tmp_path):
    cfg = load_config("tiny", PROBE_SETS)
    with pytest.raises(FileNotFoundError, match="checkpoint.pt"):
        run_linear(cfg, tmp_path / "nowhere", tmp_path / "out", show_progress=False)
    record = json.loads((tmp_path / "out" / "result.json").read_text())
    assert record["status"] == "failed" and "checkpoint.pt" in record["error"]
    assert record["stage"] == "linear_cls"
