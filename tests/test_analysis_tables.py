"""Appendix tables from synthetic result.json records: progress, failures, corrupt records, rendering."""

from __future__ import annotations

import dataclasses
import io
import json

import pandas as pd
import pytest

from analysis.assemble import TableError, build_table, match_rows, pick_source
from analysis.collect import COLUMNS, Records, collect
from analysis.render import to_csv, to_latex, to_markdown, to_text
from analysis.status import sweep_status
from analysis.synthetic import METRICS, baseline_field, record, records_of, write_record, write_sweep_records
from analysis.tables import read_table, spec_of, table_specs
from jobs.rundir import SweepFolder, append_manifest
from jobs.sweep import cell_label, load_sweep, sweep_names

DEMO = "loss_weight_smoke"


@pytest.fixture(scope="module")
def demo():
    sweep = load_sweep(DEMO)
    return sweep, sweep.expand()


def knn_record(run, acc, status="done", error=None):
    metrics = {"top1@10": acc, "top5@10": acc + 5.0} if status == "done" else None
    return record(run, "knn", status, metrics, error)


def test_every_table_spec_fits_the_sweeps_that_feed_it():
    used = set()
    for name in sweep_names() + [f"{n}_smoke" for n in sweep_names()]:
        sweep = load_sweep(name)
        spec = spec_of(sweep)
        used.add(spec.id)
        cells = match_rows(spec, sweep)  # raises when a row has no cell or a cell has no row
        assert len(cells) == len(spec.rows)
        ks = set(load_sweep(name).expand()[0].config.eval.knn_ks)
        for row in spec.rows:
            for column in spec.columns:
                stage, metric = pick_source(spec, row, column.key, sweep)
                assert stage in sweep.stages
                if stage == "knn":
                    assert int(metric.split("@")[1]) in ks
                if sweep.preset == "paper":  # paper sweeps measure exactly what the appendix reports
                    assert (stage, metric) == row.sources[column.key][0]
            assert row.ref is None or 0 <= row.ref < len(spec.rows)
    assert used == set(PAPER)


# The appendix's numbers per table, row by row (paper value per column, and the row each is tested against), as
# analysis/tables.py held them before the sweep files laid the tables out.
PAPER = {
    "A1": ([{"knn": 75.0}, {"knn": 74.8}, {"knn": 72.9}, {"knn": 71.8}], [None, 0, 0, 0]),
    "A2": ([{"linear": 75.0, "knn": 72.1}, {"linear": 73.9, "knn": 72.1}], [1, None]),
    "A3": ([{"linear": 73.9, "knn": 72.1}, {"linear": 76.3, "knn": 75.0}, {"linear": 75.0, "knn": 72.1},
            {"linear": 76.9, "knn": 75.0}], [None, 0, None, 2]),
    "A4": ([{"top1": 61.0}, {"top1": 71.9}, {"top1": 73.5}, {"top1": 73.9}], [3, 3, 3, None]),
    # §9: the default row (attention, p = 0.5, BN) is the paper's 73.9 configuration; each row is tested against
    # a row one factor away (p = 0.01 vs p = 0 without BN is the appendix's own comparison)
    "A9": ([{}, {"top1": 72.6}, {}, {"top1": 71.1}, {}, {"top1": 73.9}, {}], [1, None, 0, 1, 5, None, 5]),
    "A10": ([{"top1": 73.7}, {"top1": 73.5}, {"top1": 73.9}, {"top1": 73.6}], [2, 2, None, 2]),
    "M1": ([{"top1": 71.6}, {}, {}, {"top1": 73.9}], [None, 0, 0, 0]),   # + DINO with restoration (issue 21)
}


def test_the_sweep_files_hold_the_papers_values():
    specs = table_specs()
    assert sorted(specs) == sorted(PAPER)
    for table_id, (paper, refs) in PAPER.items():
        assert [row.paper for row in specs[table_id].rows] == paper
        assert [row.ref for row in specs[table_id].rows] == refs
    for name in sweep_names():  # a budget never changes the layout
        assert spec_of(load_sweep(name, budget="smoke")) == spec_of(load_sweep(name))


def test_a_named_table_is_the_layout_of_the_file_that_lays_it_out(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("table: A10\npreset: smoke\nrepeats: 2\nstages: [pretrain, knn]\n"
                    "grid:\n  loss.restore_weight: [0.2, 0.4, 0.6, 0.8]\n")
    assert spec_of(load_sweep(path)) == table_specs()["A10"]
    path.write_text("table: A99\npreset: smoke\n")
    with pytest.raises(TableError, match="sweep mine names table 'A99', which no sweep file lays out; use one of"):
        spec_of(load_sweep(path))


@pytest.mark.parametrize("change,message", [
    (lambda t: t.pop("title"), "table: 'title' is missing; add title:"),
    (lambda t: t.update(colums={}), "table: unknown key 'colums'; did you mean 'columns'?"),
    (lambda t: t["rows"][0].update(label=["a", "b"]), "table.rows[0]: label has 2 texts for 1 row headers"),
    (lambda t: t["rows"][0].update(label=0.2), "must be a text or a list of texts, got 0.2; quote numbers"),
    (lambda t: t["rows"][0].update(paper={"linear": 70.0}), "paper names column 'linear', which the table lacks"),
    (lambda t: t["rows"][0].update(ref=0), "table.rows[0]: ref 0 is not another row's index; give 0 .. 3"),
    (lambda t: t["rows"][0].update(cell={"loss.restore_weight": {"rank": -1}}), "rank must be an integer >= 0"),
    (lambda t: t["columns"]["top1"].update(sources=["knn:top1@10"]), "source 'knn:top1@10' is not stage/metric"),
])
def test_bad_table_blocks_are_one_line(change, message):
    import copy

    block = copy.deepcopy(load_sweep("loss_weight").table)
    change(block)
    with pytest.raises(TableError) as err:
        read_table(block, "loss_weight.yaml: table")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_sweep_that_does_not_fit_its_table_is_named(demo):
    sweep, _ = demo
    other = dataclasses.replace(sweep, grid={"loss.restore_weight": [0.2, 0.4, 0.6, 0.5]})
    with pytest.raises(TableError, match="needs cell loss.restore_weight=0.8, which sweep loss_weight_smoke"):
        match_rows(spec_of(sweep), other)
    probe = dataclasses.replace(load_sweep("probe_smoke"), stages=("pretrain", "knn", "linear_cls"))
    empty = Records(pd.DataFrame([], columns=COLUMNS), ())
    with pytest.raises(TableError, match="needs stage linear_dino, which sweep probe_smoke does not run"):
        build_table(spec_of(probe), probe, empty)


def test_finished_sweep_hand_computed_cells(tmp_path, demo):
    sweep, runs = demo
    for run in runs:
        write_record(tmp_path, record(run, "pretrain", metrics=METRICS["pretrain"](0)))
        # weight 0.2: 70 and 72 -> 71.00 +- 1.00; other weights 73 +- 0.5 per repeat
        acc = (70.0 + 2 * run.repeat) if run.cell["loss.restore_weight"] == 0.2 else 72.5 + run.repeat
        write_record(tmp_path, knn_record(run, acc))
    table = build_table(spec_of(sweep), sweep, collect(tmp_path))
    md = to_markdown(table)
    # smoke scale: the paper's ImageNet value for reference, with its s.e., and no Δ
    assert "| Restore weight | k-NN (%) in place of Linear (%) | paper (ImageNet, not comparable) |\n" in md
    assert "| 0.2 | 71.00 ± 1.00 (n=2) | 73.7 ± 0.22 |\n" in md
    assert "| 0.6 | 73.00 ± 0.50 (n=2) | 73.9 ± 0.22 |\n" in md
    assert "-2.70" not in md and "Δ =" not in md
    assert "Missing or failed runs: none." in md
    assert "ddof = 1" in md and "s.e. = s/√n" in md
    assert "k-NN (%) in place of Linear (%)" in md and "budget lighter than the smoke preset" in md
    assert f"preset smoke with {cell_label(sweep.overrides)}, 2 repeats" in md  # the demo's budget is named


def test_half_finished_sweep_shows_progress_and_names_missing_runs(tmp_path, demo):
    sweep, runs = demo
    first = [r for r in runs if r.repeat == 0]
    for run in first:
        write_record(tmp_path, knn_record(run, 71.0))
    second = next(r for r in runs if r.repeat == 1)
    write_record(tmp_path, knn_record(second, 71.0, status="running"))
    table = build_table(spec_of(sweep), sweep, collect(tmp_path))
    md = to_markdown(table)
    assert md.count("| 1/2 | ") == 4 and "(n=" not in md.split("\n- ")[0]
    assert "Missing (no record yet): 3" in md and f"{runs[1].run_id}" in md
    assert f"Running: 1 — loss.restore_weight=0.2 r1 ({second.run_id}, knn)" in md


def test_failed_run_and_corrupt_record_are_named(tmp_path, demo):
    sweep, runs = demo
    for run in runs:
        write_record(tmp_path, knn_record(run, 71.0 + run.repeat))
    failed = runs[0]  # weight 0.2, repeat 0
    write_record(tmp_path, knn_record(failed, 0, status="failed", error="RuntimeError: out of memory\ntrace"))
    corrupt = tmp_path / DEMO / runs[2].run_id / "knn" / "result.json"
    corrupt.write_text('{"schema": 1, "run_id": ')  # a writer killed mid-write (before atomic writes)
    wrong = tmp_path / DEMO / runs[3].run_id / "knn" / "result.json"
    wrong.write_text(json.dumps({**json.loads(wrong.read_text()), "schema": 2}))
    records = collect(tmp_path)
    assert {s.path for s in records.skipped} == {str(corrupt), str(wrong)}
    table = build_table(spec_of(sweep), sweep, records)
    md = to_markdown(table)
    # weight 0.2: one failed, one done, nothing pending -> a number with n = 1 and no s.e.
    assert "| 0.2 | 72.00 (n=1, no s.e.) | 73.7 ± 0.22 |\n" in md
    assert f"Failed: 1 — loss.restore_weight=0.2 r0 ({failed.run_id}, knn): RuntimeError: out of memory." in md
    assert "Skipped 2 unusable record(s): " in md
    assert f"{corrupt} (unreadable: Expecting value" in md and f"{wrong} (schema 2, expected 1)" in md
    # the corrupt one is also missing: its cell shows progress
    assert "Missing (no record yet): 2" in md


def test_record_schema_checks(tmp_path, demo):
    _, runs = demo
    run = runs[0]
    cases = {
        "missing key 'metrics'": {k: v for k, v in knn_record(run, 70).items() if k != "metrics"},
        "unknown status 'finished'": {**knn_record(run, 70), "status": "finished"},
        "key 'repeat' has type str": {**knn_record(run, 70), "repeat": "0"},
        "metric 'top1@10' is not a number": {**knn_record(run, 70), "metrics": {"top1@10": "high"}},
        "stage 'pretrain' does not match its folder 'knn'": {**knn_record(run, 70), "stage": "pretrain"},
        "partial records are not counted": {**knn_record(run, 70), "partial": True, "pretrain_status": "failed"},
    }
    for i, (reason, data) in enumerate(cases.items()):
        root = tmp_path / str(i)
        path = root / DEMO / run.run_id / "knn" / "result.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(data))
        records = collect(root)
        assert records.frame.empty and len(records.skipped) == 1
        assert reason in records.skipped[0].reason


def test_stale_records_are_ignored_and_counted(tmp_path, demo):
    sweep, runs = demo
    old = dataclasses.replace(runs[0], run_id="000000000000-r0")
    write_record(tmp_path, knn_record(old, 99.0))
    md = to_markdown(build_table(spec_of(sweep), sweep, collect(tmp_path)))
    assert "Ignored 1 record(s) of runs outside the current sweep definition" in md
    assert "99.00" not in md


def test_paired_test_against_the_reference_row(tmp_path, demo):
    sweep, runs = demo
    for run in runs:
        write_record(tmp_path, knn_record(run, 70.0 + run.repeat + run.cell["loss.restore_weight"]))
    table = build_table(spec_of(sweep), sweep, collect(tmp_path), test=True)
    by_label = {row.label[0]: row for row in table.rows}
    assert by_label["0.6"].is_ref and not by_label["0.6"].tests
    # constant per-seed differences: the paired test sees no spread and an exact shift -> p = 0
    t = by_label["0.2"].tests["top1"]
    assert t.kind == "paired" and t.p == 0.0
    md = to_markdown(table)
    assert "| ref |" in md and "(paired)" in md and "paired over seeds" in md


def test_renderers(tmp_path, demo):
    sweep, runs = demo
    write_sweep_records(tmp_path, runs)
    table = build_table(spec_of(sweep), sweep, collect(tmp_path))
    latex = to_latex(table)
    assert r"\toprule" in latex and r"\bottomrule" in latex and r"$\pm$" in latex
    assert r"(\%)" in latex and r"loss\_weight\_smoke" in latex and "ddof = 1" in latex
    assert latex.count(r" \\") == 1 + len(table.rows)
    frame = pd.read_csv(io.StringIO(to_csv(table)))
    assert list(frame["Restore weight"]) == [0.2, 0.4, 0.6, 0.8]
    assert list(frame["paper"]) == [73.7, 73.5, 73.9, 73.6] and set(frame["n"]) == {2}
    assert set(frame["paper_se"]) == {0.2236} and set(frame["budget"]) == {"smoke"}
    assert frame["delta"].isna().all() and not frame["paper_comparable"].any()  # smoke: no Δ against ImageNet
    text = to_text(table)
    assert "budget smoke" in text and "73.7" in text and "ddof = 1" in text


def test_status_counts_every_state(tmp_path, demo):
    sweep, runs = demo
    write_record(tmp_path, record(runs[0], "pretrain", metrics=METRICS["pretrain"](0)))
    write_record(tmp_path, knn_record(runs[0], 70.0))
    write_record(tmp_path, record(runs[1], "pretrain", "running"))
    write_record(tmp_path, record(runs[2], "pretrain", "preempted"))
    write_record(tmp_path, record(runs[3], "pretrain", "failed", error="ValueError: nan loss"))
    pretrain = {"run_id": runs[4].run_id, "stage": "pretrain", "job_id": "7_4"}
    append_manifest(SweepFolder(tmp_path, DEMO), [pretrain])
    status = sweep_status(sweep, collect(tmp_path), tmp_path)
    assert status.counts["pretrain"] == {"done": 1, "running": 1, "failed": 1, "preempted": 1, "queued": 1,
                                         "missing": 3}
    assert status.counts["knn"] == {"done": 1, "running": 0, "failed": 0, "preempted": 0, "queued": 0,
                                    "missing": 7}
    assert status.failures == (f"{runs[3].run_id} pretrain: ValueError: nan loss",)


def test_record_cache_follows_changes(tmp_path, demo):
    _, runs = demo
    run = runs[0]
    path = write_record(tmp_path, knn_record(run, 70.0))
    first = collect(tmp_path)
    cache = tmp_path / DEMO / ".report-cache.json"
    assert cache.is_file() and first.frame["metrics"][0]["top1@10"] == 70.0
    # a writer replaces the record atomically (new inode): the next report must see the new value
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(knn_record(run, 71.5)))
    tmp.replace(path)
    assert collect(tmp_path).frame["metrics"][0]["top1@10"] == 71.5
    path.write_text("{")  # now corrupt: named, not served from the cache
    again = collect(tmp_path)
    assert again.frame.empty and again.skipped[0].path == str(path)
    cache.write_text("not json")  # a damaged cache is ignored
    path.write_text(json.dumps(knn_record(run, 72.0)))
    assert collect(tmp_path).frame["metrics"][0]["top1@10"] == 72.0


def test_mask_prob_csv_keeps_the_p_axis_beside_the_p_value(tmp_path):
    sweep = load_sweep("mask_prob_smoke")
    write_sweep_records(tmp_path, sweep.expand())
    frame = pd.read_csv(io.StringIO(to_csv(build_table(spec_of(sweep), sweep, collect(tmp_path), test=True))))
    assert list(frame["p"]) == [0.0, 0.0, 0.01, 0.01, 0.25, 0.5, 0.75]
    assert list(frame["Decoder BN"]) == ["yes", "no", "yes", "no", "yes", "yes", "yes"]
    assert frame["p_value"].isna().tolist() == [False, True, False, False, False, True, False]  # two references
    assert list(frame["ref"]) == ["random 0 no", "ref", "random 0 yes", "random 0 no", "attention (MST) 0.5 yes",
                                  "ref", "attention (MST) 0.5 yes"]
    assert set(frame["test"].dropna()) == {"paired"}
    assert list(frame["paper"].isna()) == [True, False, True, False, True, False, True]


def test_decorrelated_seeds_use_welch(tmp_path, demo):
    sweep, _ = demo
    sweep = dataclasses.replace(sweep, decorrelate_seeds=True)
    runs = sweep.expand()
    assert len({r.seed for r in runs if r.repeat == 0}) == 4
    write_sweep_records(tmp_path, runs)
    table = build_table(spec_of(sweep), sweep, collect(tmp_path), test=True)
    assert {row.tests["top1"].kind for row in table.rows if row.tests} == {"welch"}
    assert "cells decorrelated" in to_markdown(table)


def test_baseline_rows_and_delta_against_random_init(demo):
    sweep, runs = demo
    recs = []
    for run in runs:
        # seed of repeat r: random init 59.9 + r, raw pixels 79.9 + r (k-NN top1@10 = acc - 0.1); cells 72.5 + r
        field = baseline_field("knn", 60.0 + run.repeat, 80.0 + run.repeat)
        recs.append(record(run, "knn", metrics={"top1@10": 72.5 + run.repeat}, baselines=field))
    table = build_table(spec_of(sweep), sweep, records_of(recs))
    md = to_markdown(table)
    assert "| Restore weight | k-NN (%) in place of Linear (%) | paper (ImageNet, not comparable) | Δ init |" in md
    assert "| 0.6 | 73.00 ± 0.50 (n=2) | 73.9 ± 0.22 | +12.60 |" in md
    assert "| random init | 60.40 ± 0.50 (n=2) | — | — |" in md
    assert "| raw pixels | 80.40 ± 0.50 (n=2) | — | +20.00 |" in md
    assert "random init: the same architecture at its random initialisation" in md
    assert "from k-NN (%) in place of Linear (%): weighted k-NN top-1 at k = 10 (knn)" in md
    frame = pd.read_csv(io.StringIO(to_csv(table)))
    assert list(frame["Restore weight"].astype(str)) == ["0.2", "0.4", "0.6", "0.8", "random init", "raw pixels"]
    assert frame["delta_init"].round(2).tolist()[:4] == [12.6] * 4
    # the random-init row shows no Δ init in the table, so none in the CSV either
    assert pd.isna(frame["delta_init"][4]) and frame["delta_init"][5] == pytest.approx(20.0)
    assert list(frame["baseline"].fillna("")) == [""] * 4 + ["random init", "raw pixels"]
    assert "random init" in to_text(table) and r"$\Delta$ init" in to_latex(table)
    # without the field nothing changes: no baseline rows, no Δ init column
    plain = to_markdown(build_table(spec_of(sweep), sweep, records_of([{**r, "baselines": None} for r in recs])))
    assert "random init" not in plain and "Δ init" not in plain


def test_baselines_follow_each_columns_metric_source():
    sweep = load_sweep("probe_smoke")  # columns: DINO probe (linear_dino) and k-NN
    recs = []
    for run in sweep.expand():
        for stage in ("linear_dino", "linear_cls", "knn"):
            recs.append(record(run, stage, metrics=METRICS[stage](70.0),
                               baselines=baseline_field(stage, 50.0 + run.repeat, 60.0)))
    table = build_table(spec_of(sweep), sweep, records_of(recs), test=True)
    init = table.baselines["random init"]
    assert init["linear"].summary.mean == pytest.approx(51.4)  # linear_dino's top1_last = acc + 0.9 (first row)
    assert init["knn"].summary.mean == pytest.approx(50.4)  # top1@10 = acc - 0.1
    assert table.baselines["raw pixels"]["knn"].summary.se == 0.0
    md = to_markdown(table)
    assert "| random init | 51.40 ± 0.50 (n=2) | — | — | — | 50.40 ± 0.50 (n=2) | — | — | — |" in md
    assert "DINO's linear probe on the last 4 class tokens (linear_dino, last epoch)" in md


def test_collected_records_with_baselines_show_the_baseline_rows(tmp_path, demo):
    """result.json files written by the product's record writer, as the eval stage writes them, read back by
    collect() from disk (and again from its cache): the table shows both baselines and Δ init."""
    from mst.atomic import atomic_write_json
    from mst.config import config_hash, config_to_dict
    from mst.run.record import make_record

    def write(run, stage, metrics, **fields):
        # the job layer's extra fields (jobs/launcher.py make_stage_job, jobs/stage_job.py _record_extra)
        extra = {"run_id": run.run_id, "sweep": run.sweep, "cell": run.cell, "repeat": run.repeat, "seed": run.seed,
                 "cluster": "local", "nodes": "localhost", "job_ids": ["1_0"], "devices": 1, "device_kind": "cpu"}
        rec = make_record(stage, config_to_dict(run.config), config_hash(run.config), "done", metrics, 12.0, extra,
                          device="cpu", precision="fp32", **fields)
        atomic_write_json(tmp_path / run.sweep / run.run_id / stage / "result.json", rec)

    sweep, runs = demo
    for run in runs:
        write(run, "pretrain", {"loss": 4.0, "steps": 62, "epochs": 2})
        ks, r = run.config.eval.knn_ks, run.repeat
        # per seed (repeat r): ours 72.5 + r, random init 60 + r, raw pixels 80 + r, at every k
        write(run, "knn", {f"top1@{k}": 72.5 + r for k in ks}, baselines={
            "random init": {f"top1@{k}": 60.0 + r for k in ks}, "raw pixels": {f"top1@{k}": 80.0 + r for k in ks}})
    for attempt in ("parsed", "cached"):
        records = collect(tmp_path)
        assert records.skipped == () and len(records.frame) == 2 * len(runs), attempt
        knn = records.frame[records.frame["stage"] == "knn"]
        assert all(b["random init"]["top1@10"] in (60.0, 61.0) for b in knn["baselines"]), attempt
        md = to_markdown(build_table(spec_of(sweep), sweep, records))
        assert "| Restore weight | k-NN (%) in place of Linear (%) | paper (ImageNet, not comparable) | Δ init |" \
            in md, attempt
        assert "| 0.6 | 73.00 ± 0.50 (n=2) | 73.9 ± 0.22 | +12.50 |" in md, attempt
        assert "| random init | 60.50 ± 0.50 (n=2) | — | — |" in md, attempt
        assert "| raw pixels | 80.50 ± 0.50 (n=2) | — | +20.00 |" in md, attempt
        assert "random init: the same architecture at its random initialisation" in md, attempt
    assert (tmp_path / sweep.name / ".report-cache.json").is_file()


def test_footnotes_name_each_source_by_the_stage_registrys_words():
    from analysis.tables import source_name
    from mst.stages import STAGES

    assert source_name("linear_cls", "top1_best") == f"{STAGES['linear_cls'].description} (linear_cls, best epoch)"
    assert source_name("linear_dino", "top1_last").startswith("DINO's linear probe on the last 4 class tokens")
    assert source_name("knn", "top5@20") == "weighted k-NN top-5 at k = 20 (knn)"
    assert source_name("attention", "images") == "attention images"  # no wording: the names as they are
