"""benchmarks/quality_fmnist.py (make quality): one pre-training a seed, mean ± s.e. of the gaps, the verdict."""

import importlib.util
import json
import re
import sys
from pathlib import Path

from analysis.stats import summarize

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("quality_fmnist", ROOT / "benchmarks" / "quality_fmnist.py")
quality = sys.modules["quality_fmnist"] = importlib.util.module_from_spec(_spec)  # dataclasses look it up
_spec.loader.exec_module(quality)

TINY = ["--preset", "tiny", "--train-n", "256", "--test-n", "128", "--set", "train.epochs=1",
        "--set", "data.train_subset=64", "--set", "train.threads=1"]


def test_gap_text_gives_mean_and_standard_error():
    assert quality.gap_text(summarize([7.0, 3.0])) == "+5.0 ± 2.0"      # stdev (ddof 1) 2.83 / sqrt 2
    assert quality.gap_text(summarize([4.0])) == "+4.0 (one seed, no s.e.)"


def test_each_seed_pretrains_its_own_folder_and_the_mean_decides(tmp_path, capsys):
    report = tmp_path / "quality.md"
    args = [*TINY, "--seeds", "0", "1", "--out", str(tmp_path / "runs"), "--results", str(report)]
    assert quality.main([*args, "--min-gap", "-100"]) == 0
    out = capsys.readouterr().out
    raw = float(re.search(r"raw pixels top-1@10 +([0-9.]+)", out).group(1))
    per_seed = [float(m) for m in re.findall(r"pre-trained top-1@10 +([0-9.]+)", out)]
    distances = [float(m) for m in re.findall(r"to raw pixels ([-+][0-9.]+)", out)]
    assert len(per_seed) == 2 and all(abs(d - (p - raw)) <= 0.11 for d, p in zip(distances, per_seed))
    mean = float(re.search(r"distance to raw pixels \(pre-trained minus raw pixels, top-1@10\): ([-+][0-9.]+) ±",
                           out).group(1))
    assert abs(mean - (sum(per_seed) / 2 - raw)) <= 0.11
    text = report.read_text()
    rows = [line for line in text.splitlines() if line.startswith(("| 0 |", "| 1 |"))]
    assert len(rows) == 2
    assert "**PASS**" in text and "--seeds 0 1" in text
    gaps = summarize([float(row.split("|")[4]) for row in rows])     # rows print gaps to 0.1 points
    mean, se = map(float, re.search(r"mean over 2 seeds: \*\*([-+0-9.]+) ± ([0-9.]+) points", text).groups())
    assert abs(mean - gaps.mean) <= 0.1 and abs(se - gaps.se) <= 0.1
    for seed in (0, 1):
        record = json.loads((tmp_path / "runs" / f"seed-{seed}" / "result.json").read_text())
        assert record["status"] == "done" and record["seed"] == seed
    # the same folders are reused (0 CPU s) and an unreachable bar fails the check
    assert quality.main([*args, "--min-gap", "100"]) == 1
    assert "**FAIL**" in report.read_text()


def test_bad_override_is_one_line_and_writes_nothing(tmp_path, capsys):
    report = tmp_path / "quality.md"
    assert quality.main([*TINY, "--set", "optim.lr=-1", "--results", str(report)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "optim.lr" in err and "\n" not in err
    assert not report.exists()


def test_repeated_seed_is_refused(tmp_path, capsys):
    assert quality.main([*TINY, "--seeds", "0", "0", "--results", str(tmp_path / "q.md")]) == 2
    assert "--seeds" in capsys.readouterr().err
