"""The method comparison (sweeps/method.yaml, issue 21): four arms, 10 paired seeds of the whole smoke preset at
budget smoke, and its table's paired tests between every pair of arms."""

import statistics

from scipy.stats import t as student_t
from test_sweep import SMOKE_FILES, SMOKE_RUN_IDS  # the former smoke files and their pinned ids

from analysis.assemble import build_table
from analysis.collect import collect
from analysis.synthetic import write_sweep_records
from analysis.tables import spec_of
from jobs.sweep import load_sweep

# method at budget smoke is no longer the former file's experiment: four arms, 10 paired seeds, the whole smoke
# preset (issue 21); its former file still expands to its own pinned ids
METHOD_SMOKE_RUN_IDS = [
    "fce182df5b87-r0", "c75a7c24fdc7-r1", "0a07def5b7be-r2", "2f6c43598ba6-r3", "ed4d1d68d83a-r4",
    "758780176722-r5", "d99833484551-r6", "75632bfecac6-r7", "d7e79eea17e4-r8", "a932b26a3b9d-r9",
    "090b5b4b620c-r0", "73a83cacdc02-r1", "8c9aba83b831-r2", "05269d1e9a88-r3", "193c4492a920-r4",
    "b5257d3d281a-r5", "24fe59413b78-r6", "7962d0570b41-r7", "866ddc6f6d71-r8", "1b0aa37fda09-r9",
    "3163e27f0903-r0", "70d91c843f69-r1", "c492667767eb-r2", "b5586a520fa0-r3", "5fc381b53d3f-r4",
    "1d62e720b59e-r5", "27e52a7e56ef-r6", "1296ff0e6d75-r7", "f2a9f644a425-r8", "59305b5fb13d-r9",
    "6fbe198e8f4f-r0", "661ab10794e5-r1", "fb9c853f9eb9-r2", "d586e0f59100-r3", "03cb4e39fcf8-r4",
    "88d9201c1054-r5", "3154164bfc41-r6", "bda5c8996f41-r7", "f917a68ad4a0-r8", "78ff453d60fc-r9",
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
    assert {r.config.train.epochs * (r.config.data.train_subset // 64) for r in runs} == {624}
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
    assert len(notes) == 6   # every pair of the four arms
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
    assert any(f"MST, attention-guided mask \u2212 DINO (no mask, no restoration) = +2.40 \u00b1 {se:.2f} points "
               f"over 10 paired seeds; paired t(9) = {t_attn:.2f}, p < 0.001." in n
               for n in notes)
    # constant shifts -> no spread, p = 0, printed as a bound
    assert any("DINO + restoration, no mask \u2212 DINO (no mask, no restoration) = +0.50 \u00b1 0.00" in n
               and n.endswith("p < 0.001.") for n in notes)
    assert any("MST, attention-guided mask \u2212 MST, random mask = +0.50 \u00b1 0.00" in n
               and n.endswith("p < 0.001.") for n in notes)
