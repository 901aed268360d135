"""`mst-report plot`'s figures: the axis names the metric the table used, and the title fits the figure."""

from __future__ import annotations

import pytest

from analysis.assemble import build_table
from analysis.collect import collect
from analysis.plots import plot_table, table_figure
from analysis.synthetic import METRICS, baseline_field, record, records_of, write_record
from analysis.tables import spec_of
from jobs.sweep import load_sweep


@pytest.fixture()
def knn_only_table(tmp_path):
    """The demo sweep (pre-training + k-NN, no linear probe) with every run finished."""
    sweep = load_sweep("loss_weight_smoke")
    assert "linear_cls" not in sweep.stages and "knn" in sweep.stages
    for run in sweep.expand():
        write_record(tmp_path, record(run, "pretrain", metrics=METRICS["pretrain"](0)))
        write_record(tmp_path, record(run, "knn", metrics=METRICS["knn"](70.0 + run.repeat)))
    return build_table(spec_of(sweep), sweep, collect(tmp_path))


def test_the_y_axis_names_the_stand_in_metric_and_the_title_fits(knn_only_table):
    import matplotlib.pyplot as plt

    fig = table_figure(knn_only_table)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        figure_box = fig.bbox
        for ax in fig.axes:
            ylabel = " ".join(ax.get_ylabel().split())
            assert ylabel.startswith("k-NN (%)") and "in place of Linear (%)" in ylabel
            box = ax.yaxis.label.get_window_extent(renderer)
            assert figure_box.x0 <= box.x0 and box.y0 >= figure_box.y0 and box.y1 <= figure_box.y1
        title = fig.get_suptitle()
        assert " ".join(title.split()) == knn_only_table.title  # wrapped, nothing dropped
        assert "\n" in title  # the demo's caption is longer than one line of its figure
        (text,) = [t for t in fig.texts if t.get_text() == title]
        box = text.get_window_extent(renderer)
        assert figure_box.x0 <= box.x0 and box.x1 <= figure_box.x1 and box.y1 <= figure_box.y1
    finally:
        plt.close(fig)


def test_plot_table_writes_the_png(knn_only_table, tmp_path):
    path = plot_table(knn_only_table, tmp_path / "plots" / "demo.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_baselines_are_drawn_as_lines_on_the_panels_metric():
    import matplotlib.pyplot as plt

    sweep = load_sweep("loss_weight_smoke")
    recs = [record(run, "knn", metrics=METRICS["knn"](70.0 + run.repeat),
                   baselines=baseline_field("knn", 60.0 + run.repeat, 80.0)) for run in sweep.expand()]
    fig = table_figure(build_table(spec_of(sweep), sweep, records_of(recs)))
    try:
        (ax,) = fig.axes
        assert " ".join(ax.get_ylabel().split()).startswith("k-NN (%) in place of Linear (%)")
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert lines["random init (mean of 2 seeds)"].get_ydata()[0] == pytest.approx(60.4)
        assert lines["raw pixels (mean of 2 seeds)"].get_ydata()[0] == pytest.approx(79.9)
    finally:
        plt.close(fig)
