"""Sweep files: every one loads and expands; bad files fail with one line naming the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.sweep import STAGES, SWEEP_DIR, SweepError, budgeted, global_budgets, load_sweep, sweep_names
from mst.config import config_hash
from mst.seeding import derive_seed

PAPER_SWEEPS = ("k_sweep", "probe", "longer_training", "bert", "mask_prob", "loss_weight", "method")

# The former sweeps/<name>_smoke.yaml files, exactly as they were on main before named budgets replaced them:
# each must expand to the same runs as its sweep at budget smoke, whatever the presets hold.
SMOKE_FILES = Path(__file__).resolve().parent / "fixtures" / "sweeps_before_budgets"

# A pin against accidental changes of the run ids at budget smoke (runs folders, examples, the demo).
# The ids changed once, when the smoke preset began recording baselines (eval.baselines) and took one global
# gradient-norm clip (optim.clip_mode).
SMOKE_RUN_IDS = {
    "bert_smoke": [
        "6d0d6bd1e98b-r0", "176bde76c8aa-r1", "22b53816420a-r0", "e5335d1e0aad-r1", "5bce89ae062c-r0",
        "ab5fd1ef1d39-r1", "d7ec35d86844-r0", "95996d879012-r1",
    ],
    "k_sweep_smoke": [
        "d7ec35d86844-r0", "95996d879012-r1",
    ],
    "longer_training_smoke": [
        "d7ec35d86844-r0", "95996d879012-r1", "00d5cfd7a7c9-r0", "562b4910d1da-r1",
    ],
    "loss_weight_smoke": [
        "ea8cc8e3a8ba-r0", "14ab1f309f3e-r1", "152d2c1eaf58-r0", "399b22b109d4-r1", "729ddca2e036-r0",
        "770a36a73af7-r1", "6b9b711d42be-r0", "fd17c8522b6a-r1",
    ],
    "mask_ratio_smoke": [
        "7b81f306ae82-r0", "eb3bed1d438e-r1", "2488822cf0e0-r0", "f4161998b7d9-r1", "f8198bd6c7c8-r0",
        "7c3aa7af906f-r1", "9794affcdc44-r0", "1654929c96bf-r1", "39933994be16-r0", "17aed755faf9-r1",
        "d7ec35d86844-r0", "95996d879012-r1", "a1597f6cfea8-r0", "ea321710d2ab-r1",
    ],
    "method_smoke": [
        "88b0debd4650-r0", "af530ac7ffd0-r1", "d8c83885c2f8-r2", "7dd98f48e432-r0", "b20d6acd2796-r1",
        "e051956e88e3-r2", "ac0c898e8cfc-r0", "54fdd0c14c5a-r1", "b93d106ef6f2-r2",
    ],
    "probe_smoke": [
        "d7ec35d86844-r0", "95996d879012-r1",
    ],
}

# The demo's sweep at budget smoke since it runs the fast smoke recipe for 310 steps (issue 21: its cells above
# the random-initialisation row); the former loss_weight_smoke file still expands to its own ids above.
DEMO_RUN_IDS = [
    "ab2e8c0350fa-r0", "4c6cf2ed2d65-r1", "2cb99c8cebe2-r0", "3e640055c038-r1", "0d5084c2b0ee-r0",
    "5281f7cec9fc-r1", "416cdaf906de-r0", "ff5008733e51-r1",
]
CHANGED_SINCE_THE_FILES = {"method_smoke", "loss_weight_smoke"}   # their budgets moved on (issue 21)


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
    assert "budgets" not in names and sorted(global_budgets(SWEEP_DIR)) == ["smoke"]


@pytest.mark.parametrize("name", PAPER_SWEEPS)
def test_smoke_budget_feeds_the_same_table_with_the_same_axes(name):
    paper, smoke = load_sweep(name), load_sweep(f"{name}_smoke")
    assert paper.preset == "paper" and paper.repeats == 5 and paper.budget is None
    assert smoke.preset == "smoke" and smoke.table == paper.table
    assert list(smoke.grid) == list(paper.grid) and smoke.zip == paper.zip
    assert "not comparable" in smoke.description
    assert smoke.name == f"{name}_smoke" and smoke.budget == "smoke"  # its runs folder


def test_the_former_smoke_files_are_kept_as_they_were_on_main():
    assert sorted(p.stem for p in SMOKE_FILES.glob("*.yaml")) == sorted(SMOKE_RUN_IDS)


@pytest.mark.parametrize("name", sorted(set(SMOKE_RUN_IDS) - CHANGED_SINCE_THE_FILES))
def test_budget_smoke_keeps_the_run_ids_of_the_smoke_files(name):
    old_file = load_sweep(SMOKE_FILES / f"{name}.yaml")  # an existing x_smoke.yaml path is that file
    assert old_file.path == SMOKE_FILES / f"{name}.yaml" and old_file.budget is None
    at_budget = load_sweep(name.removesuffix("_smoke"), budget="smoke")
    old_runs, runs = old_file.expand(), at_budget.expand()
    assert [r.run_id for r in old_runs] == [r.run_id for r in runs]
    assert [r.seed for r in old_runs] == [r.seed for r in runs]
    assert [r.config for r in old_runs] == [r.config for r in runs]
    assert [r.stages for r in old_runs] == [r.stages for r in runs] and old_file.stages == at_budget.stages
    for sweep in (old_file, at_budget, load_sweep(name)):
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
    assert [run.run_id for run in sweep.expand()] == DEMO_RUN_IDS
    assert [r.run_id for r in load_sweep(SMOKE_FILES / "loss_weight_smoke.yaml").expand()] == \
        SMOKE_RUN_IDS["loss_weight_smoke"]
    assert sweep.stages == ("pretrain", "knn") and sweep.repeats == 2
    assert sweep.grid == {"loss.restore_weight": [0.2, 0.4, 0.6, 0.8]}
    assert "budget lighter than the smoke preset" in sweep.description
    from jobs.config_io import load_config
    smoke = load_config("smoke")         # what the description compares the demo's budget with
    demo = sweep.expand()[0].config

    def steps(cfg):
        return cfg.train.epochs * (cfg.data.train_subset // cfg.train.batch_size)
    assert steps(demo) == 310 < steps(smoke) and demo.data.train_subset < smoke.data.train_subset
    assert demo.model.size == (64, 4, 2) and demo.model.patch_size == 4   # the fast smoke recipe


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


TABLE = """name: t
preset: tiny
repeats: 2
stages: [pretrain, knn]
grid:
  loss.restore_weight: [0.2, 0.4]
table:
  id: T1
  title: "A table"
  row_header: [Weight]
  columns:
    knn: {label: k-NN (%), sources: [knn/top1@10]}
  rows:
    - {label: "0.2", cell: {loss.restore_weight: 0.2}, paper: {knn: 70.0}}
    - {label: "0.4", cell: {loss.restore_weight: 0.4}, ref: 0}
"""


@pytest.mark.parametrize(("old", "new", "message"), [
    ("paper: {knn: 70.0}", "paper: {linear: 70.0}", ("table.rows[0]: paper names column 'linear', which the table "
     "lacks; use one of knn")),
    ("cell: {loss.restore_weight: 0.4}", "cell: {loss.restore_weight: 0.5}", ("table T1 row '0.4' needs cell "
     "loss.restore_weight=0.5, which sweep t does not define; make the sweep's axes match the table")),
    ("ref: 0}", "ref: 2}", "table.rows[1]: ref 2 is not another row's index; give 0 .. 1"),
    ("[knn/top1@10]", "[linear_cls/top1_best]", ("table T1 column 'knn' needs stage linear_cls, which sweep t does "
     "not run; add it to the sweep's stages")),
    ("[0.2, 0.4]", "[0.2, 0.4, 0.6]", "sweep t cell loss.restore_weight=0.6 has no row in table T1"),
    ("[knn/top1@10]", "[knn/top1@15]", ("table T1 column 'knn': stage knn reports no metric 'top1@15'; choose one "
     "of top1@10, top1@20, top5@10, top5@20")),
    ("[knn/top1@10]", "[knn/top1_best]", "table T1 column 'knn': stage knn reports no metric 'top1_best'"),
    ("  row_header", "  shade: 3\n  row_header", "table: unknown key 'shade'; valid keys: id, title"),
    ("  title: \"A table\"\n", "", "table: 'title' is missing; add title:"),
])
def test_load_sweep_refuses_a_bad_table_in_one_line(tmp_path, old, new, message):
    path = write(tmp_path, "t", TABLE)
    assert [row["loss.restore_weight"] for row in load_sweep(path).cells()] == [0.2, 0.4]  # the good file loads
    assert old in TABLE
    path = write(tmp_path, "t", TABLE.replace(old, new))
    with pytest.raises(SweepError) as err:
        load_sweep(path)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith(f"{path}: ")


def test_mst_sweep_submit_refuses_a_bad_table_before_submitting(tmp_path):
    import subprocess
    import sys

    path = write(tmp_path, "t", TABLE.replace("ref: 0}", "ref: 5}"))
    out = subprocess.run([sys.executable, "-m", "jobs.cli.sweep", "submit", str(path), "--cluster", "local",
                          "--runs", str(tmp_path / "runs")], cwd=Path(__file__).resolve().parents[1], check=False,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert "table.rows[1]: ref 5 is not another row's index" in out.stderr
    assert not (tmp_path / "runs").exists()


def test_budget_refinements_of_the_sweep_files():
    longer = load_sweep("longer_training", budget="smoke")
    assert longer.grid == {"train.epochs": [2, 6]} and "train.epochs" not in longer.overrides
    assert load_sweep("longer_training").grid == {"train.epochs": [100, 300]}
    method = load_sweep("method", budget="smoke")
    assert method.repeats == 10 and method.stages == ("pretrain", "knn", "linear_cls")
    assert method.overrides == {"model.patch_size": 4, "model.embed_dim": 64, "model.num_heads": 2,
                                "train.epochs": 2, "data.train_subset": 10000, "data.test_subset": 0,
                                "train.threads": 1, "eval.curve_steps": [0, 78, 156, 234, 312]}
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


def test_a_blank_mapping_is_an_empty_one(tmp_path):
    path = write(tmp_path, "s", BASE.format(name="s") + "overrides:\ngrid:\nbudgets:\n  smoke:\n    grid:\n    overrides:\n")
    sweep = load_sweep(path, budget="smoke")
    assert sweep.grid == {} and sweep.zip == {}
    assert sweep.overrides == {"train.epochs": 2, "data.train_subset": 2000, "data.test_subset": 1000}
    assert "'budgets.smoke' must be a mapping, got None" in bad(tmp_path, "budgets:\n  smoke:\n")


def test_an_existing_smoke_file_given_by_path_is_that_file_not_an_alias(tmp_path):
    write(tmp_path, "s", BASE.format(name="s") + "grid:\n  loss.restore_weight: [0.2, 0.4]\n")
    own = write(tmp_path, "s_smoke", BASE.format(name="s_smoke") + "grid:\n  loss.restore_weight: [0.6]\n")
    sweep = load_sweep(own)
    assert sweep.path == own and sweep.budget is None and sweep.name == "s_smoke"
    assert sweep.preset == "tiny" and sweep.grid == {"loss.restore_weight": [0.6]}


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
    would_run = [line.split()[5] for line in out.stdout.splitlines() if line.startswith("would run ")]
    assert would_run == DEMO_RUN_IDS
    assert dry("loss_weight_smoke").stdout == out.stdout  # the old name is the same sweep
    out = dry("loss_weight", "--budget", "huge")
    assert out.returncode == 2 and out.stderr == "error: sweep 'loss_weight' has no budget 'huge'; choose one " \
        "of smoke (budgets.yaml or the sweep's budgets)\n"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("cluster", ["local", "dcu128"])
def test_each_cell_config_is_built_once_and_carried_to_the_job(cluster, tmp_path, monkeypatch):
    """load_sweep builds and validates each cell's config; expanding, fitting the table, resolving the runs
    for a cluster and starting a job reuse it. Only a profile that changes a value (dcu128's fp16) builds
    the cluster's config again, once per cell."""
    from jobs.plan import resolve_runs
    from jobs.profiles import load_profile
    from jobs.stage_job import stage_job
    from mst.config import Config, codec

    sweep = load_sweep("mask_prob_smoke")
    profile = load_profile(cluster)
    built: list[type] = []
    decode = codec.decode
    monkeypatch.setattr(codec, "decode", lambda cls, *a, **k: (built.append(cls), decode(cls, *a, **k))[1])
    for cell in sweep.cells():
        sweep.cell_config(cell)
    runs = resolve_runs(sweep, profile)
    jobs = [stage_job(run, "pretrain", profile, tmp_path) for run in runs]
    assert [job.validated for job in jobs] == [run.config for run in runs]
    changed = profile.environment.precision != sweep.cell_config(sweep.cells()[0]).train.precision
    assert built.count(Config) == (len(sweep.cells()) if changed else 0)


def test_a_sweep_is_its_decoded_file_plus_name_path_and_budget():
    """Every field of the file reaches the sweep as written (at paper scale), with no copy of its own; the
    sweep adds its name, path and budget, and at a budget the budget's fields are layered over the file's."""
    import dataclasses

    from jobs.config_io import read_yaml
    from jobs.sweep import SweepFile, resolve
    from mst.config.codec import decode

    path = resolve("mask_prob")[0]
    written = decode(SweepFile, read_yaml(path, "sweep"), str(path))
    sweep = load_sweep("mask_prob")
    assert isinstance(sweep, SweepFile)
    for f in dataclasses.fields(SweepFile):
        if f.name not in ("name", "stages"):
            assert getattr(sweep, f.name) == getattr(written, f.name), f.name
    assert (sweep.name, sweep.path, sweep.budget) == ("mask_prob", path, None)
    smoke = load_sweep("mask_prob", budget="smoke")
    assert (smoke.name, smoke.budget, smoke.budgets) == ("mask_prob_smoke", "smoke", written.budgets)
    assert smoke.preset != written.preset or smoke.repeats != written.repeats


def test_a_budgets_fields_are_sweep_file_fields_of_the_same_type():
    """at_budget layers a budget over a sweep field by field, so each Budget field must be the SweepFile field
    of its name (its type, or that type left unset as None)."""
    import dataclasses
    import typing

    from jobs.sweep_file import Budget, SweepFile

    sweep_types, budget_types = typing.get_type_hints(SweepFile), typing.get_type_hints(Budget)
    for f in dataclasses.fields(Budget):
        assert f.name in sweep_types, f.name
        assert budget_types[f.name] in (sweep_types[f.name], sweep_types[f.name] | None), f.name
