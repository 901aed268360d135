"""`mst-report curve`: k-NN vs pre-training step per sweep cell (mean ± s.e. over seeds) and for one run, beside
the knn stage's random-init and raw-pixel lines, drawn from the records."""

from __future__ import annotations

import json
import math

import pytest

from analysis.cli import main
from analysis.collect import collect
from analysis.curves import curve_figure, run_curves, sweep_curves
from analysis.synthetic import METRICS, baseline_field, record, write_record
from jobs.sweep import load_sweep

STEPS = (0, 50, 100)


def accuracy(run, step: int) -> float:
    """A curve that rises with the step and differs by cell and by seed."""
    return 60.0 + step / 10 + 2 * run.cell["loss.restore_weight"] + run.repeat


@pytest.fixture()
def runs(tmp_path):
    sweep = load_sweep("loss_weight_smoke")
    for run in sweep.expand():
        pretrain = record(run, "pretrain", metrics=METRICS["pretrain"](0))
        pretrain["curve"] = [{"step": s, "top1@10": accuracy(run, s), "top5@10": 99.0} for s in STEPS]
        write_record(tmp_path, pretrain)
        write_record(tmp_path, record(run, "knn", metrics=METRICS["knn"](70.0),
                                      baselines=baseline_field("knn", 62.0 + run.repeat, 80.0)))
    return tmp_path, sweep


def test_each_cell_is_the_mean_and_se_over_its_seeds_at_each_step(runs):
    root, sweep = runs
    curves = sweep_curves(collect(root).frame, sweep.name)
    assert len(curves.lines) == len({json.dumps(r.cell, sort_keys=True) for r in sweep.expand()})
    for label, points in curves.lines.items():
        weight = float(label.split("=")[1])
        assert list(points) == list(STEPS)
        for step, summary in points.items():   # repeats 0 and 1: values v and v + 1
            assert summary.n == 2
            assert summary.mean == pytest.approx(60.5 + step / 10 + 2 * weight)
            assert summary.se == pytest.approx(0.5)
    assert curves.baselines["random init"].mean == pytest.approx(62.5 - 10 / 100)   # METRICS' top1@10 offset
    assert curves.baselines["raw pixels"].mean == pytest.approx(80.0 - 10 / 100)


def test_the_figure_has_a_line_per_cell_and_the_baselines(runs):
    import matplotlib.pyplot as plt

    root, sweep = runs
    fig = curve_figure(sweep_curves(collect(root).frame, sweep.name))
    try:
        labels = fig.axes[0].get_legend_handles_labels()[1]
        assert sum("mean \u00b1 s.e., n = 2" in t for t in labels) == 4
        assert any(t.startswith("random init") for t in labels) and any(t.startswith("raw pixels") for t in labels)
    finally:
        plt.close(fig)


def test_report_curve_writes_a_png_per_sweep_and_prints_the_numbers(runs, tmp_path, capsys):
    root, sweep = runs
    assert main(["curve", "--runs", str(root), "--sweep", sweep.name, "--out", str(tmp_path / "png")]) == 0
    out = capsys.readouterr().out
    png = tmp_path / "png" / f"{sweep.name}_curve.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {png}" in out and "100\t" in out and "random init (knn stage's images): 62.4 (n=2)" in out


def test_one_run_folder(tmp_path, capsys):
    run = load_sweep("loss_weight_smoke").expand()[0]
    pretrain = record(run, "pretrain", metrics=METRICS["pretrain"](0))
    pretrain["curve"] = [{"step": s, "top1@10": 60.0 + s} for s in STEPS]
    folder = write_record(tmp_path, pretrain).parent.parent
    curves = run_curves(folder)
    assert {s: p.mean for s, p in curves.lines["this run"].items()} == {0: 60.0, 50: 110.0, 100: 160.0}
    assert curves.baselines == {}
    assert main(["curve", "--run", str(folder / "pretrain")]) == 0
    assert (folder / "pretrain" / "curve.png").is_file()


@pytest.mark.parametrize("curve, message", [
    (None, "holds no 'top1@10' learning curve"),
    ([{"step": 0, "top1@10": math.nan}], "holds no 'top1@10' learning curve"),
])
def test_no_usable_curve_is_one_line_and_exit_2(tmp_path, capsys, curve, message):
    run = load_sweep("loss_weight_smoke").expand()[0]
    pretrain = record(run, "pretrain", metrics=METRICS["pretrain"](0))
    if curve is not None:
        pretrain["curve"] = curve
    folder = write_record(tmp_path, pretrain).parent
    with pytest.raises(SystemExit) as exit_info:
        main(["curve", "--run", str(folder)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit):
        main(["curve", "--runs", str(tmp_path), "--sweep", run.sweep])
    assert "no finished pre-training of sweep" in capsys.readouterr().err


def test_report_curve_never_imports_torch(runs, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root, sweep = runs
    code = f"""
import sys
import analysis.cli
assert analysis.cli.main(["curve", "--runs", "{root}", "--sweep", "{sweep.name}", "--out", "{tmp_path}"]) == 0
print("torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], check=False, cwd=Path(__file__).resolve().parents[1],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"
