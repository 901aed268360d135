"""The method comparison (sweeps/method.yaml, issue 21): four arms, 10 paired seeds of the fast smoke recipe at
budget smoke, and its table's paired tests between every pair of arms."""

import statistics

from scipy.stats import t as student_t
from test_sweep import SMOKE_FILES, SMOKE_RUN_IDS  # the former smoke files and their pinned ids

from analysis.assemble import build_table
from analysis.collect import collect
from analysis.synthetic import write_sweep_records
from analysis.tables import spec_of
from jobs.sweep import load_sweep

# method at budget smoke is no longer the former file's experiment: four arms, 10 paired seeds of the fast smoke
# recipe (patch 4, width 64, 312 steps; issue 21); its former file still expands to its own pinned ids
METHOD_SMOKE_RUN_IDS = [
    "0be945a00b7c-r0", "149450879a4c-r1", "0c5ca71c7a51-r2", "303130b1e87e-r3", "6548ee6162ff-r4",
    "d951868638fb-r5", "64353ee65ef4-r6", "06f0ed02e563-r7", "15d42299b837-r8", "09ac571dc1b5-r9",
    "b1f344248ddc-r0", "ebb167e64a4f-r1", "7794d060b4a4-r2", "75c7cb0af361-r3", "60df720ab433-r4",
    "6c3da0d6f9e5-r5", "3f36f462f4ee-r6", "06d3740f8376-r7", "7941caa72f9e-r8", "ae170c37dfd2-r9",
    "10d4ab0e13d0-r0", "70cdaf9efdf0-r1", "c8fe1ca7c013-r2", "37fc8e146243-r3", "51e44e58b084-r4",
    "733795fdfc3d-r5", "c27a7c8e33ab-r6", "45a3b2650043-r7", "797e5d84e8af-r8", "2e2502322416-r9",
    "27d1aa83f5c6-r0", "7f2bc75b207e-r1", "d5919892aee8-r2", "c0fa5d0461ef-r3", "5cee66ceb35b-r4",
    "993107912978-r5", "bc61665d0103-r6", "cc95d2087d54-r7", "1e0a3381de5b-r8", "e785cd882c57-r9",
]


def test_the_method_comparison_at_budget_smoke_is_four_arms_and_ten_paired_seeds():
    old_file = load_sweep(SMOKE_FILES / "method_smoke.yaml")
    assert [r.run_id for r in old_file.expand()] == SMOKE_RUN_IDS["method_smoke"]
    method = load_sweep("method", budget="smoke")
    assert method == load_sweep("method_smoke") and method.name == "method_smoke"
    runs = method.expand()
    assert [r.run_id for r in runs] == METHOD_SMOKE_RUN_IDS
    arms = {(r.cell["mask.strategy"], r.cell["loss.restore_weight"], r.cell["mask.prob"]) for r in runs}
    assert arms == {("none", 0.0, 0.0), ("none", 0.6, 0.0), ("random", 0.6, 0.25), ("attention", 0.6, 0.5)}
    seeds = {arm: [r.seed for r in runs if r.cell["mask.strategy"] == arm[0]
                   and r.cell["loss.restore_weight"] == arm[1]] for arm in arms}
    assert all(len(s) == 10 and s == seeds[("none", 0.0, 0.0)] for s in seeds.values())   # paired
    assert {r.config.train.epochs * (r.config.data.train_subset // 64) for r in runs} == {312}
    assert {(r.config.model.patch_size, r.config.model.size) for r in runs} == {(4, (64, 4, 2))}
    assert {r.stages for r in runs} == {("pretrain", "knn", "linear_cls")}
    assert {r.config.data.test_subset for r in runs} == {0}   # the whole 10k test split


def test_method_table_tests_every_pair_of_arms(tmp_path):
    sweep = load_sweep("method_smoke")
    # per seed r: DINO 70 + r; DINO + restoration = DINO + 0.5 (a constant shift); random = DINO + (1, 2, 3, 1,
    # 2, ...); attention = random + 0.5
    shift = {("none", 0.0): lambda r: 0.0, ("none", 0.6): lambda r: 0.5, ("random", 0.6): lambda r: 1.0 + r % 3,
             ("attention", 0.6): lambda r: 1.5 + r % 3}

    def arm(run):
        return run.cell["mask.strategy"], run.cell["loss.restore_weight"]
    runs = sweep.expand()
    assert sweep.repeats == 10 and len({arm(r) for r in runs}) == 4
    assert {r.seed for r in runs if arm(r) == ("none", 0.0)} == {r.seed for r in runs if arm(r) == ("attention", 0.6)}
    write_sweep_records(tmp_path, runs, lambda run: 70.0 + run.repeat + shift[arm(run)](run.repeat))
    table = build_table(spec_of(sweep), sweep, collect(tmp_path), test=True)
    notes = [n for n in table.footnotes if "paired t(9)" in n]
    # every pair of the four arms, in each column: the linear probe and k-NN (the primary test's metric)
    assert len(notes) == 12 and sum(n.startswith("k-NN (%): ") for n in notes) == 6
    # by hand: differences 1, 2, 3, 1, 2, 3, 1, 2, 3, 1 -> mean 1.9, s.e. s / sqrt(10), t = mean / s.e.
    diffs = [1.0 + r % 3 for r in range(10)]
    se = statistics.stdev(diffs) / 10 ** 0.5
    t = statistics.mean(diffs) / se
    assert 2 * student_t.sf(t, 9) < 0.001  # printed as a bound
    random_vs_dino = (f"MST, random mask \u2212 DINO (no mask, no restoration) = +1.90 \u00b1 {se:.2f} points over "
                      f"10 paired seeds; paired t(9) = {t:.2f}, p < 0.001.")
    assert any(random_vs_dino in n for n in notes)
    # the primary test's pair: attention-guided MST - DINO, differences shifted by 0.5 -> mean 2.4
    t_attn = 2.4 / se
    assert any(n.startswith("k-NN (%): ") and f"MST, attention-guided mask \u2212 DINO (no mask, no restoration) = +2.40 \u00b1 {se:.2f} points "
               f"over 10 paired seeds; paired t(9) = {t_attn:.2f}, p < 0.001." in n
               for n in notes)
    # constant shifts -> no spread, p = 0, printed as a bound
    assert any("DINO + restoration, no mask \u2212 DINO (no mask, no restoration) = +0.50 \u00b1 0.00" in n
               and n.endswith("p < 0.001.") for n in notes)
    assert any("MST, attention-guided mask \u2212 MST, random mask = +0.50 \u00b1 0.00" in n
               and n.endswith("p < 0.001.") for n in notes)
