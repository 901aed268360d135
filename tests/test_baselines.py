"""Random-init and raw-pixel baselines (eval.baselines): in result.json under the stage's own metric names,
computed once per budget and seed and cached under the runs root, recomputed when the cache is damaged."""

import json
import logging

import pytest
import torch

from analysis.collect import check_record, collect
from jobs.config_io import load_config
from mst.eval import baselines as bl
from mst.eval.baselines_cache import BaselinesEntry, decode_entry
from mst.eval.epochs import fresh_counters, summarise
from mst.eval.features import eval_dataset
from mst.eval.knn import weighted_knn
from mst.eval.knn_stage import run_knn
from mst.eval.linear import run_linear
from mst.eval.linear_probe import train_probe
from mst.eval.stage import Stage
from mst.seeding import seed_everything
from mst.train import NonFiniteLoss, run_pretrain
from mst.train.nets import Student

pytestmark = pytest.mark.usefixtures("one_thread")
SETS = ["train.threads=1"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A real (two-step) pre-training of the tiny preset: the checkpoint the stages read."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("pretrain")
    run_pretrain(load_config("tiny", ["train.epochs=1", "data.train_subset=64", *SETS]), out, show_progress=False)
    return out


def extra(run_id: str, seed: int) -> dict:
    return {"run_id": run_id, "sweep": "s", "cell": {}, "repeat": 0, "seed": seed, "cluster": "local"}


def knn_in_sweep(cfg, pretrained, root, run_id):
    """run_knn into <root>/s/<run_id>/knn, as a sweep's job runs it."""
    return run_knn(cfg, pretrained, root / "s" / run_id / "knn", record_extra=extra(run_id, cfg.train.seed),
                   show_progress=False)


def entries(root):
    return sorted((root / bl.CACHE_FOLDER).glob(f"*/{bl.CACHE_NAME}"))


def test_knn_baselines_land_in_result_json_and_the_records(pretrained, tmp_path):
    cfg = load_config("tiny", SETS)
    assert cfg.eval.baselines  # the tiny preset turns them on
    record = knn_in_sweep(cfg, pretrained, tmp_path, "a-r0")
    on_disk = json.loads((tmp_path / "s" / "a-r0" / "knn" / "result.json").read_text())
    assert on_disk["baselines"] == record["baselines"]
    assert list(record["baselines"]) == ["random init", "raw pixels"]
    for metrics in record["baselines"].values():
        assert set(metrics) == set(record["metrics"]) == {"top1@10", "top5@10", "top1@20", "top5@20"}
    [entry] = entries(tmp_path)
    assert json.loads(entry.read_text())["baselines"] == record["baselines"]
    assert not (tmp_path / "s" / "a-r0" / "knn" / "features").exists()  # baseline features dropped with the stage's
    # the report's records carry the field
    assert check_record(on_disk, "s", "a-r0", "knn") is None
    frame = collect(tmp_path).frame
    assert frame["baselines"][0] == record["baselines"]


def test_raw_pixel_knn_is_the_knn_of_the_flattened_images_and_beats_chance(pretrained, tmp_path):
    cfg = load_config("tiny", SETS)
    record = knn_in_sweep(cfg, pretrained, tmp_path, "a-r0")
    train, test = eval_dataset(cfg, "train"), eval_dataset(cfg, "test")
    xs, ys = zip(*(train[i] for i in range(len(train))))
    xt, yt = zip(*(test[i] for i in range(len(test))))
    direct = weighted_knn(torch.stack(xs).flatten(1), torch.tensor(ys), torch.stack(xt).flatten(1),
                          torch.tensor(yt), cfg.eval.knn_ks, cfg.eval.knn_temperature, 10)
    raw = record["baselines"]["raw pixels"]
    assert raw == pytest.approx(direct)
    assert raw["top1@10"] > 10.0 + 25.0  # 10 classes: chance is 10 %; pixels measured ~66 % on these 256 / 128


def test_linear_baselines_use_the_stage_metric_names(pretrained, tmp_path):
    cfg = load_config("tiny", SETS)
    for probe, cached in (("cls", False), ("dino", True)):
        out = tmp_path / "s" / "a-r0" / f"linear_{probe}"
        record = run_linear(cfg, pretrained, out, probe=probe, cached_features=cached,
                            record_extra=extra("a-r0", cfg.train.seed), show_progress=False)
        assert set(record["baselines"]) == {"random init", "raw pixels"}
        for metrics in record["baselines"].values():
            assert set(metrics) == set(record["metrics"])
            assert 0.0 <= metrics["top1_best"] <= 100.0 and 1 <= metrics["best_epoch"] <= cfg.eval.linear_epochs
        assert json.loads((out / "result.json").read_text())["baselines"] == record["baselines"]
    # one entry per stage and mode: the probes do not share the knn's, nor each other's
    assert len(entries(tmp_path)) == 2


def test_a_baseline_probe_trains_as_the_stage_probe_and_leaves_its_checkpoint_and_log_alone(tmp_path):
    cfg = load_config("tiny", SETS)
    pixels = bl.PixelFeatures(cfg.augment.eval_crop)
    own = Stage("linear_cls", cfg, tmp_path / "own")
    trained = train_probe(own, pixels, "cls", True, fresh_counters(), None)  # the stage's own probe, on pixels
    assert [ln["epoch"] for ln in map(json.loads, (own.out / "metrics.jsonl").read_text().splitlines())] == [1, 2]
    host = Stage("linear_cls", cfg, tmp_path / "host")
    host.save({"probe": "cls"})
    host.log({"epoch": 1, "top1": 12.5})
    kept = {path: path.read_bytes() for path in (host.checkpoint_path, host.out / "metrics.jsonl")}
    assert bl.probe_metrics(host, pixels, "cls", True, "t") == summarise(trained.history)
    assert {path: path.read_bytes() for path in kept} == kept
    diverging = Stage("linear_cls", load_config("tiny", [*SETS, "eval.linear_lr=1e38"]), tmp_path / "nan")
    with pytest.raises(NonFiniteLoss, match=r"non-finite 't' baseline probe loss \(.*\); lower eval.linear_lr"):
        bl.probe_metrics(diverging, pixels, "cls", True, "t")
    assert not diverging.checkpoint_path.exists() and not (diverging.out / "metrics.jsonl").exists()


def test_computed_once_per_seed_and_shared_by_the_cells(pretrained, tmp_path, monkeypatch):
    calls = []
    compute = bl.compute
    monkeypatch.setattr(bl, "compute", lambda stage, mode: calls.append(stage.out) or compute(stage, mode))
    cfg = load_config("tiny", SETS)
    first = knn_in_sweep(cfg, pretrained, tmp_path, "a-r0")
    [entry] = entries(tmp_path)
    stamp = entry.stat().st_mtime_ns
    # another cell of the same repeat (another method setting, same seed and budget): read from the cache
    other_cell = load_config("tiny", [*SETS, "mask.prob=0.3"])
    second = knn_in_sweep(other_cell, pretrained, tmp_path, "b-r0")
    assert second["baselines"] == first["baselines"]
    assert len(calls) == 1 and entry.stat().st_mtime_ns == stamp
    # another repeat (another seed): its own entry, its own random-init network
    reseeded = load_config("tiny", [*SETS, "train.seed=1"])
    third = knn_in_sweep(reseeded, pretrained, tmp_path, "a-r1")
    assert len(calls) == 2 and len(entries(tmp_path)) == 2
    assert third["baselines"]["raw pixels"] == first["baselines"]["raw pixels"]  # pixels do not depend on it
    a, b = bl.initial_backbone(cfg).state_dict(), bl.initial_backbone(reseeded).state_dict()
    assert not torch.equal(a["vit.pos_embed"], b["vit.pos_embed"])


def test_a_damaged_cache_entry_is_recomputed_with_one_warning(pretrained, tmp_path, caplog):
    cfg = load_config("tiny", SETS)
    first = knn_in_sweep(cfg, pretrained, tmp_path, "a-r0")
    [entry] = entries(tmp_path)
    for damage in ("{not json", json.dumps({"version": 1, "key": entry.parent.name,
                                            "baselines": {"random init": {"top1@10": "__import__('os')"}}})):
        entry.write_text(damage)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mst.eval.baselines"):
            again = knn_in_sweep(cfg, pretrained, tmp_path, f"x{len(damage)}-r0")
        warnings = [r for r in caplog.records if r.name == "mst.eval.baselines"]
        assert len(warnings) == 1 and "recomputing" in warnings[0].getMessage()
        assert again["baselines"] == first["baselines"]
        assert json.loads(entry.read_text())["baselines"] == first["baselines"]


def test_setting_off_writes_no_field_and_no_cache(pretrained, tmp_path):
    cfg = load_config("tiny", [*SETS, "eval.baselines=false"])
    record = knn_in_sweep(cfg, pretrained, tmp_path, "a-r0")
    assert "baselines" not in record
    assert "baselines" not in json.loads((tmp_path / "s" / "a-r0" / "knn" / "result.json").read_text())
    assert not (tmp_path / bl.CACHE_FOLDER).exists()
    assert collect(tmp_path).frame["baselines"][0] is None
    assert load_config("paper").eval.baselines is False


def test_random_init_is_the_network_pretraining_starts_from():
    cfg = load_config("tiny", SETS)
    before = torch.random.get_rng_state()
    backbone = bl.initial_backbone(cfg)
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's random stream is left alone
    seed_everything(cfg.train.seed)  # what the trainer does before building its networks
    start = Student(cfg).backbone.state_dict()
    for name, tensor in backbone.state_dict().items():
        assert torch.equal(tensor, start[name]), name


def test_cache_root_and_entry_checks(tmp_path):
    sweep_stage = tmp_path / "runs" / "s" / "a-r0" / "knn"
    assert bl.cache_root(sweep_stage, extra("a-r0", 0)) == tmp_path / "runs"
    assert bl.cache_root(tmp_path / "mine" / "knn", None) == tmp_path / "mine"  # mst-eval --out mine/knn
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "runs" / bl.CACHE_FOLDER).parent.mkdir(parents=True)
    (tmp_path / "runs" / bl.CACHE_FOLDER).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="outside"):
        bl.cache_folder(tmp_path / "runs", "k")
    good = {"version": 1, "key": "k", "baselines": {"random init": {"top1@10": 50.0}, "raw pixels": {"top1@10": 70}}}
    assert isinstance(decode_entry(good, "k", {"top1@10"}), BaselinesEntry)
    assert "key" in decode_entry(good, "other", {"top1@10"})
    assert "metrics" in decode_entry(good, "k", {"top1@10", "top1@20"})
    nan = {**good, "baselines": {"random init": {"top1@10": float("nan")}, "raw pixels": {"top1@10": 1.0}}}
    assert "finite" in decode_entry(nan, "k", {"top1@10"})


def test_a_record_with_a_malformed_baselines_field_is_skipped_and_named(pretrained, tmp_path):
    cfg = load_config("tiny", SETS)
    knn_in_sweep(cfg, pretrained, tmp_path, "a-r0")
    path = tmp_path / "s" / "a-r0" / "knn" / "result.json"
    record = json.loads(path.read_text())
    record["baselines"]["raw pixels"]["top1@10"] = "high"
    path.write_text(json.dumps(record))
    records = collect(tmp_path)
    assert records.frame.empty and "baseline 'raw pixels' metric 'top1@10'" in records.skipped[0].reason


def test_tools_read_the_runs_root_cache(pretrained, tmp_path, monkeypatch):
    cfg = load_config("tiny", SETS)
    record = knn_in_sweep(cfg, pretrained, tmp_path, "a-r0")
    monkeypatch.setattr(bl, "compute", lambda stage, mode: pytest.fail("the cached entry was not used"))
    assert bl.baselines_for("knn", cfg, tmp_path) == record["baselines"]  # benchmarks/method_context.py
    with pytest.raises(ValueError, match="has no baselines"):
        bl.baselines_for("attention", cfg, tmp_path)


def test_the_typed_entry_reads_what_main_wrote_and_writes_the_same_bytes(tmp_path):
    """Entries written before the entry was typed (a hand-built dict, schema 1) read as they are, and the typed
    writer gives the same bytes; best_epoch stays an integer."""
    from mst.eval.baselines_cache import BaselinesEntry, write_entry

    metrics = {"top1_best": 12.5, "top5_best": 30.0, "top1_last": 12.0, "top5_last": 29.5, "best_epoch": 3}
    written = {"version": 1, "key": "k", "inputs": {"stage": "linear_cls", "eval": {"knn_ks": [10, 20]}},
               "baselines": {"random init": metrics, "raw pixels": {**metrics, "best_epoch": 1}},
               "wall_time_s": 1.25, "computed_at": "2026-01-31T12:00:00Z"}
    old = tmp_path / "old" / bl.CACHE_NAME
    old.parent.mkdir()
    old.write_text(json.dumps(written, indent=2, default=str) + "\n")  # main's atomic_write_json of the dict
    names = bl.expected_metrics("linear_cls", (10, 20))
    found, problem = bl.read_entry(old, "k", names)
    assert problem is None and found == written["baselines"] and type(found["raw pixels"]["best_epoch"]) is int
    new = tmp_path / "new" / bl.CACHE_NAME
    write_entry(new, BaselinesEntry(**written))
    assert new.read_bytes() == old.read_bytes()
    old.write_text(json.dumps({**written, "version": 2}))
    assert bl.read_entry(old, "k", names) == (None, "version 2 / key 'k', expected 1 / k")
    old.write_text(json.dumps({**written, "baselines": {"random init": metrics}}))
    assert "must hold exactly random init, raw pixels" in bl.read_entry(old, "k", names)[1]


def test_the_cache_key_follows_the_backbone_size_and_the_probe_norm():
    def key(stage, *sets):
        return bl.cache_key(bl.key_inputs(stage, load_config("tiny", [*SETS, *sets]), "cached_features", "cpu", "fp32"))

    base = key("linear_cls")
    # a resized backbone starts from another random network: never the arch's own entry
    assert len({base, key("linear_cls", "model.embed_dim=24"), key("linear_cls", "model.depth=1"),
                key("linear_cls", "model.embed_dim=32", "model.num_heads=4")}) == 4
    # the probe's input norm changes the probe's numbers, not the k-NN's
    assert key("linear_cls", "eval.linear_norm=batchnorm") != base
    assert key("knn", "eval.linear_norm=batchnorm") == key("knn")
    # unset fields leave the inputs as caches written before them hold them
    assert set(bl.key_inputs("linear_cls", load_config("tiny", SETS), "cached_features", "cpu", "fp32")["model"]) == \
        {"arch", "patch_size", "img_size"}
