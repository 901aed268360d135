"""Sweep files: every one loads and expands; bad files fail with one line naming the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.sweep import STAGES, SweepError, load_sweep, sweep_names
from mst.config import config_hash
from mst.seeding import derive_seed

PAPER_SWEEPS = ("k_sweep", "probe", "longer_training", "bert", "mask_ratio", "loss_weight", "method")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


BASE = """name: {name}
table: A10
preset: tiny
repeats: 2
stages: [pretrain, knn]
"""


def bad(tmp_path: Path, extra: str, name: str = "s") -> str:
    with pytest.raises(SweepError) as err:
        load_sweep(write(tmp_path, name, BASE.format(name=name) + extra))
    message = str(err.value)
    assert "\n" not in message
    return message


def test_every_appendix_sweep_and_its_smoke_twin_exist():
    names = set(sweep_names())
    for name in PAPER_SWEEPS:
        assert name in names and f"{name}_smoke" in names


@pytest.mark.parametrize("name", PAPER_SWEEPS)
def test_smoke_twin_feeds_the_same_table_with_the_same_axes(name):
    paper, smoke = load_sweep(name), load_sweep(f"{name}_smoke")
    assert paper.preset == "paper" and paper.repeats == 5
    assert smoke.preset == "smoke" and smoke.table == paper.table
    assert list(smoke.grid) == list(paper.grid) and smoke.zip == paper.zip
    assert "not comparable" in smoke.description


@pytest.mark.parametrize("name", sorted(sweep_names()))
def test_expansion_run_ids_and_paired_seeds(name):
    sweep = load_sweep(name)
    runs = sweep.expand()
    assert len(runs) == len(sweep.cells()) * sweep.repeats
    assert len({r.run_id for r in runs}) == len(runs)
    for run in runs:
        assert run.run_id == f"{config_hash(run.config)}-r{run.repeat}"
        assert run.config.train.seed == run.seed == derive_seed(sweep.base_seed, run.repeat, "pretrain")
        assert run.stages == sweep.stages and run.stages[0] == "pretrain"
        for key, value in run.cell.items():
            section, field = key.split(".")
            got = getattr(getattr(run.config, section), field)
            assert got == (tuple(value) if isinstance(value, list) else value)
    # repeat r has the same seed in every cell: the appendix compares runs with the same seed
    for repeat in range(sweep.repeats):
        assert len({r.seed for r in runs if r.repeat == repeat}) == 1


def test_bert_zip_gives_the_four_rows():
    cells = load_sweep("bert").cells()
    assert cells == [
        {"mask.strategy": "random", "mask.replace": "bert", "loss.restore_target": "masked", "loss.dino_weight": 0.0},
        {"mask.strategy": "random", "mask.replace": "bert", "loss.restore_target": "masked", "loss.dino_weight": 1.0},
        {"mask.strategy": "attention", "mask.replace": "bert", "loss.restore_target": "image", "loss.dino_weight": 1.0},
        {"mask.strategy": "attention", "mask.replace": "token", "loss.restore_target": "image",
         "loss.dino_weight": 1.0},
    ]


def test_demo_sweep_is_light_and_says_so():
    sweep = load_sweep("loss_weight_smoke")
    assert sweep.stages == ("pretrain", "knn") and sweep.repeats == 2
    assert sweep.grid == {"loss.restore_weight": [0.2, 0.4, 0.6, 0.8]}
    assert "budget lighter than the smoke preset" in sweep.description
    from jobs.config_io import load_config
    smoke = load_config("smoke")         # what the description compares the demo's budget with
    demo = sweep.expand()[0].config
    assert demo.train.epochs < smoke.train.epochs and demo.data.train_subset < smoke.data.train_subset


def test_grid_crossed_with_zip_and_decorrelated_seeds(tmp_path):
    sweep = load_sweep(write(tmp_path, "s", BASE.format(name="s") + """decorrelate_seeds: true
grid:
  loss.restore_weight: [0.2, 0.4]
zip:
  mask.strategy: [random, attention]
  mask.prob: [0.1, 0.3]
"""))
    assert sweep.cells() == [
        {"loss.restore_weight": 0.2, "mask.strategy": "random", "mask.prob": 0.1},
        {"loss.restore_weight": 0.2, "mask.strategy": "attention", "mask.prob": 0.3},
        {"loss.restore_weight": 0.4, "mask.strategy": "random", "mask.prob": 0.1},
        {"loss.restore_weight": 0.4, "mask.strategy": "attention", "mask.prob": 0.3},
    ]
    runs = sweep.expand()
    assert len({r.seed for r in runs if r.repeat == 0}) == 4  # each cell its own seed


def test_unknown_sweep_name_suggests_close_names():
    with pytest.raises(SweepError, match="unknown sweep 'loss_weigth'; did you mean loss_weight"):
        load_sweep("loss_weigth")


def test_unknown_top_level_key(tmp_path):
    assert "unknown key 'repeat'; did you mean 'repeats'?" in bad(tmp_path, "repeat: 3\n")


def test_unknown_override_key_is_named(tmp_path):
    msg = bad(tmp_path, "grid:\n  loss.restore_wieght: [0.2]\n")
    assert "unknown override key 'loss.restore_wieght' in grid" in msg and "loss.restore_weight" in msg
    msg = bad(tmp_path, "overrides:\n  nosuch.key: 1\n")
    assert "unknown override key 'nosuch.key' in overrides" in msg and "valid sections" in msg


def test_impossible_value_fails_when_the_cell_config_is_built(tmp_path):
    msg = bad(tmp_path, "grid:\n  mask.prob: [0.5, 1.5]\n")
    assert "mask.prob=1.5" in msg and "mask.prob" in msg and "[0, 1]" in msg
    msg = bad(tmp_path, "zip:\n  mask.strategy: [random, sideways]\n")
    assert "mask.strategy=sideways" in msg


def test_bad_stage_names(tmp_path):
    text = BASE.format(name="s").replace("[pretrain, knn]", "[pretrain, knnn]")
    with pytest.raises(SweepError, match=f"unknown stage 'knnn'; choose from {', '.join(STAGES)}"):
        load_sweep(write(tmp_path, "s", text))
    text = BASE.format(name="s").replace("[pretrain, knn]", "[knn]")
    with pytest.raises(SweepError, match="omit pretrain; add pretrain to stages"):
        load_sweep(write(tmp_path, "s", text))


def test_zip_axes_of_unequal_length(tmp_path):
    msg = bad(tmp_path, "zip:\n  mask.strategy: [random, attention]\n  mask.prob: [0.1]\n")
    assert "zip axes have unequal lengths (mask.strategy: 2, mask.prob: 1)" in msg


def test_other_mistakes(tmp_path):
    path = write(tmp_path, "s", BASE.format(name="other"))
    with pytest.raises(SweepError, match="name 'other' differs from the file name 's'; set name: s"):
        load_sweep(path)
    path = write(tmp_path, "s", BASE.format(name="s").replace("repeats: 2", "repeats: 0"))
    with pytest.raises(SweepError, match="'repeats' must be an integer >= 1, got 0"):
        load_sweep(path)
    assert "'train.seed' is set in grid" in bad(tmp_path, "grid:\n  train.seed: [1, 2]\n")
    assert "appears in both overrides and grid" in bad(
        tmp_path, "overrides:\n  mask.prob: 0.1\ngrid:\n  mask.prob: [0.2]\n")
    assert "give the same config" in bad(tmp_path, "grid:\n  mask.prob: [0.5, 0.50]\n")
    assert "must be a non-empty list" in bad(tmp_path, "grid:\n  mask.prob: 0.5\n")
