"""Sweep files: every one loads and expands; bad files fail with one line naming the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.sweep import STAGES, SweepError, budget_names, budgeted, load_sweep, sweep_names
from mst.config import config_hash
from mst.seeding import derive_seed

PAPER_SWEEPS = ("k_sweep", "probe", "longer_training", "bert", "mask_prob", "loss_weight", "method")

# The run ids of every sweeps/<name>_smoke.yaml on main before budgets replaced those files: the runs
# folders, examples and the demo written then must keep matching the same sweep at budget smoke.
SMOKE_RUN_IDS = {
    "bert_smoke": [
        "c479d9dd7f54-r0", "95845d03cc43-r1", "4f6baa9fe195-r0", "d51398eab012-r1", "f79511b2293f-r0",
        "13e97380c295-r1", "bfbc40654101-r0", "ccd2b05a9b10-r1",
    ],
    "k_sweep_smoke": [
        "bfbc40654101-r0", "ccd2b05a9b10-r1",
    ],
    "longer_training_smoke": [
        "bfbc40654101-r0", "ccd2b05a9b10-r1", "b71adf1a421d-r0", "b4da031a37e9-r1",
    ],
    "loss_weight_smoke": [
        "655bd945c798-r0", "aff7f6976f04-r1", "5842badbd548-r0", "e934bc3dbcbe-r1", "4e4e50b0eabb-r0",
        "bdc98c12f862-r1", "fd421d49374b-r0", "9af0654f0f83-r1",
    ],
    "mask_ratio_smoke": [
        "8dd3b19ea47f-r0", "4cf25e7a4219-r1", "014a963c8dde-r0", "f34f3704f88d-r1", "f070f1ecf285-r0",
        "9a836d47f06c-r1", "e82b0e03b76c-r0", "45c156a124ab-r1", "1888a490857a-r0", "4dc859053855-r1",
        "bfbc40654101-r0", "ccd2b05a9b10-r1", "0c25496fb6f7-r0", "b25b04b2c423-r1",
    ],
    "method_smoke": [
        "fffdc3e83364-r0", "55e83192a34d-r1", "55d182470a10-r2", "4ff3f886d0d5-r0", "efa5711be613-r1",
        "4a6d9c22bdbb-r2", "da7cb2c9a1f9-r0", "51a12de80b15-r1", "be751f15f2ca-r2",
    ],
    "probe_smoke": [
        "bfbc40654101-r0", "ccd2b05a9b10-r1",
    ],
}


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


def test_every_appendix_sweep_exists_once_and_runs_at_budget_smoke():
    names = set(sweep_names())
    for name in PAPER_SWEEPS:
        assert name in names and f"{name}_smoke" not in names  # the smoke scale is a budget, not a copy
        assert load_sweep(f"{name}_smoke") == load_sweep(name, budget="smoke")
    assert "budgets" not in names and budget_names() == ["smoke"]


@pytest.mark.parametrize("name", PAPER_SWEEPS)
def test_smoke_budget_feeds_the_same_table_with_the_same_axes(name):
    paper, smoke = load_sweep(name), load_sweep(f"{name}_smoke")
    assert paper.preset == "paper" and paper.repeats == 5 and paper.budget is None
    assert smoke.preset == "smoke" and smoke.table == paper.table
    assert list(smoke.grid) == list(paper.grid) and smoke.zip == paper.zip
    assert "not comparable" in smoke.description
    assert smoke.name == f"{name}_smoke" and smoke.budget == "smoke"  # its runs folder


@pytest.mark.parametrize("name", sorted(SMOKE_RUN_IDS))
def test_budget_smoke_keeps_the_run_ids_of_the_smoke_files(name):
    for sweep in (load_sweep(name), load_sweep(name.removesuffix("_smoke"), budget="smoke")):
        assert [run.run_id for run in sweep.expand()] == SMOKE_RUN_IDS[name]
        assert {run.sweep for run in sweep.expand()} == {name}  # the runs folder keeps its name


def test_mask_ratio_is_the_old_name_of_mask_prob():
    new, old = load_sweep("mask_prob"), load_sweep("mask_ratio")
    assert "mask.prob" in new.zip and old.path == new.path and old.name == "mask_ratio"
    assert [r.run_id for r in load_sweep("mask_prob_smoke").expand()] == SMOKE_RUN_IDS["mask_ratio_smoke"]
    assert load_sweep("mask_ratio", budget="smoke").name == "mask_ratio_smoke"


@pytest.mark.parametrize("name", sorted(sweep_names()) + [f"{n}_smoke" for n in sorted(sweep_names())])
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


def test_budget_refinements_of_the_sweep_files():
    longer = load_sweep("longer_training", budget="smoke")
    assert longer.grid == {"train.epochs": [2, 6]} and "train.epochs" not in longer.overrides
    assert load_sweep("longer_training").grid == {"train.epochs": [100, 300]}
    method = load_sweep("method", budget="smoke")
    assert method.repeats == 3 and method.stages == ("pretrain", "knn")
    assert method.overrides == {"train.epochs": 4, "data.train_subset": 2000, "data.test_subset": 1000,
                                "train.threads": 1}
    bert = load_sweep("bert", budget="smoke")  # the global budget alone: its overrides win over the sweep's
    assert bert.overrides == {"train.epochs": 2, "data.train_subset": 2000, "data.test_subset": 1000}
    assert bert.stages == load_sweep("bert").stages and bert.repeats == 2


def test_budget_names_and_aliases(tmp_path):
    assert budgeted("loss_weight", "smoke") == "loss_weight_smoke"
    assert budgeted("loss_weight_smoke", "smoke") == "loss_weight_smoke"  # naming it twice is harmless
    path = write(tmp_path, "s", BASE.format(name="s") + "grid:\n  loss.restore_weight: [0.2, 0.4]\n")
    assert budgeted(path, "smoke") == str(tmp_path / "s_smoke.yaml")
    at_smoke = load_sweep(tmp_path / "s_smoke.yaml")  # a path alias: the file s.yaml at budget smoke
    assert at_smoke.name == "s_smoke" and at_smoke.preset == "smoke" and at_smoke.path == path
    assert at_smoke.expand()[0].config.train.epochs == 2
    with pytest.raises(SweepError, match="sweep 'loss_weight' has no budget 'huge'; choose one of smoke"):
        load_sweep("loss_weight_huge")
    with pytest.raises(SweepError, match="unknown budget 'huge'; choose one of smoke"):
        load_sweep("loss_weight", budget="huge")
    with pytest.raises(SweepError, match="'loss_weight_smoke' already runs at budget 'smoke'; drop --budget"):
        load_sweep("loss_weight_smoke", budget="smoke")
    with pytest.raises(SweepError, match="unknown sweep 'loss_weigth_smoke'; did you mean loss_weight_smoke"):
        load_sweep("loss_weigth_smoke")


def test_bad_budget_blocks(tmp_path):
    axis = "grid:\n  train.epochs: [1, 3]\n"
    msg = bad(tmp_path, axis + "budgets:\n  smoke: {}\n", name="a")
    assert "budget 'smoke' overrides 'train.epochs', which the sweep sweeps" in msg
    with pytest.raises(SweepError, match="budget 'smoke' overrides 'train.epochs', which the sweep sweeps; give"):
        load_sweep(write(tmp_path, "b", BASE.format(name="b") + axis), budget="smoke")
    # the sweep's budget gives the axis its values: the global override of that key gives way
    ok = load_sweep(write(tmp_path, "c", BASE.format(name="c") + axis + "budgets:\n  smoke:\n    grid:\n"
                          "      train.epochs: [1, 2]\n"), budget="smoke")
    assert ok.grid == {"train.epochs": [1, 2]} and "train.epochs" not in ok.overrides
    text = BASE.format(name="d") + "budgets:\n  smoke:\n    grid:\n      mask.prob: [0.1]\n"
    with pytest.raises(SweepError, match="gives values for grid axis 'mask.prob', which the sweep's grid lacks"):
        load_sweep(write(tmp_path, "d", text), budget="smoke")
    text = BASE.format(name="e") + "budgets:\n  smoke:\n    repeat: 3\n"
    with pytest.raises(SweepError, match="unknown key 'budgets.smoke.repeat'; did you mean 'budgets.smoke.repeats'"):
        load_sweep(write(tmp_path, "e", text))
    text = BASE.format(name="f") + "budgets:\n  smoke:\n    overrides:\n      loss.restore_wieght: 0.1\n"
    with pytest.raises(SweepError, match="unknown override key 'loss.restore_wieght' in overrides"):
        load_sweep(write(tmp_path, "f", text), budget="smoke")
    (tmp_path / "budgets.yaml").write_text("tiny:\n  grid:\n    mask.prob: [0.1]\n")
    with pytest.raises(SweepError, match="budget 'tiny' gives axis values; axes belong to a sweep"):
        load_sweep(write(tmp_path, "g", BASE.format(name="g")), budget="tiny")


def test_mst_sweep_budget_flag_runs_the_alias(tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]

    def dry(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "jobs.cli.sweep", "submit", *args, "--cluster", "local",
                               "--runs", str(tmp_path / "runs"), "--dry-run"], cwd=root, check=False,
                              capture_output=True, text=True, timeout=120)
    out = dry("loss_weight", "--budget", "smoke")
    assert out.returncode == 0, out.stderr
    assert [line.split()[5] for line in out.stdout.splitlines()] == SMOKE_RUN_IDS["loss_weight_smoke"]
    assert dry("loss_weight_smoke").stdout == out.stdout  # the old name is the same sweep
    out = dry("loss_weight", "--budget", "huge")
    assert out.returncode == 2 and out.stderr == "error: sweep 'loss_weight' has no budget 'huge'; choose one " \
        "of smoke (budgets.yaml or the sweep's budgets)\n"
    assert not (tmp_path / "runs").exists()
