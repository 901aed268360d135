"""The committed example records (analysis/examples/runs: real smoke-scale runs) and what they render to: the
tables and plots beside them must be what the report makes of those records today, so they never go stale."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest

from analysis.cli import main
from analysis.collect import CACHE_NAME
from analysis.tables import table_sweeps

EXAMPLES = Path(__file__).resolve().parents[1] / "analysis" / "examples"
RUNS = EXAMPLES / "runs"
KEPT = {"result.json", "config.yaml"}
SIZE_LIMIT = 64 * 1024  # a record or config; anything larger (a checkpoint, a log) does not belong here


def _sweeps() -> list[str]:
    return sorted(p.name for p in RUNS.iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The committed records rendered again from a scratch copy, as analysis/examples/regenerate.sh does."""
    tmp = tmp_path_factory.mktemp("examples")
    shutil.copytree(RUNS, tmp / "runs")
    for fmt in ("md", "latex", "csv"):
        assert main(["tables", "--runs", str(tmp / "runs"), "--test", "--format", fmt, "--out", str(tmp / "out")]) == 0
    assert main(["plot", "--runs", str(tmp / "runs"), "--out", str(tmp / "out")]) == 0
    return tmp / "out"


def test_the_examples_are_real_records_of_the_current_sweeps_and_nothing_else():
    sweeps = _sweeps()
    assert "loss_weight_smoke" in sweeps
    for path in RUNS.rglob("*"):
        if path.is_file() and path.name != CACHE_NAME:  # the report's own cache (git-ignored) after a local run
            assert path.name in KEPT, path
            assert path.stat().st_size < SIZE_LIMIT, path
    for path in RUNS.rglob("result.json"):
        rec = json.loads(path.read_text())
        assert rec["status"] == "done" and rec["cluster"] == "local" and rec["git_sha"] != "synthetic", path
        assert rec["sweep"] in sweeps and rec["config"]["data"]["name"] == "fashion_mnist", path


def _same_csv(fresh: str, committed: str) -> bool:
    """Cell by cell; numbers to 1e-9 relative (SciPy releases differ in a p-value's last digits)."""
    def same(a: str, b: str) -> bool:
        try:
            return a == b or math.isclose(float(a), float(b), rel_tol=1e-9)
        except ValueError:
            return False
    rows_a, rows_b = list(csv.reader(fresh.splitlines())), list(csv.reader(committed.splitlines()))
    return len(rows_a) == len(rows_b) and all(
        len(a) == len(b) and all(same(x, y) for x, y in zip(a, b)) for a, b in zip(rows_a, rows_b))


@pytest.mark.parametrize("suffix", ["md", "tex", "csv"])
def test_the_committed_tables_are_what_the_records_render_to(rendered, suffix):
    for sweep in _sweeps():
        committed = EXAMPLES / f"{sweep}.{suffix}"
        assert committed.is_file(), f"{committed} is missing: run bash analysis/examples/regenerate.sh"
        fresh = (rendered / committed.name).read_text()
        same = _same_csv(fresh, committed.read_text()) if suffix == "csv" else fresh == committed.read_text()
        assert same, f"{committed} is stale: run bash analysis/examples/regenerate.sh"


def test_the_committed_plots_are_what_the_records_draw(rendered):
    import matplotlib
    import numpy as np
    from PIL import Image

    for sweep in _sweeps():
        committed = np.asarray(Image.open(EXAMPLES / f"{sweep}.png").convert("L"), dtype=float)
        fresh = np.asarray(Image.open(rendered / f"{sweep}.png").convert("L"), dtype=float)
        assert committed.shape == fresh.shape, sweep
        if matplotlib.__version__ != _locked("matplotlib"):
            continue  # another release lays text out differently (3.8 vs the lock's: 15 grey levels apart)
        # the same figure; a patch release may move a glyph's anti-aliasing, never the data
        assert np.abs(committed - fresh).mean() < 1.0, f"{sweep}.png is stale: run analysis/examples/regenerate.sh"


def _locked(package: str) -> str:
    """The version requirements/lock.txt pins (what the committed PNGs were drawn with)."""
    lock = EXAMPLES.parents[1] / "requirements" / "lock.txt"
    return next(line.split("==", 1)[1].strip() for line in lock.read_text().splitlines()
                if line.lower().startswith(f"{package}=="))


def test_the_report_names_the_tables_the_examples_do_not_fill(tmp_path, capsys):
    shutil.copytree(RUNS, tmp_path / "runs")
    assert main(["tables", "--runs", str(tmp_path / "runs"), "--format", "md"]) == 0
    out, err = capsys.readouterr()
    filled = {sweep.removesuffix("_smoke") for sweep in _sweeps()}
    for table_id, sweep in table_sweeps().items():
        assert (f"{table_id} ({sweep})" in err) == (sweep not in filled), (table_id, err)
    assert out.count("**") == 2 * len(filled)  # one bold title per filled table, and nothing else on stdout
