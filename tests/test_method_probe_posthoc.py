"""benchmarks/method_probe_posthoc.py: the arms of a re-probed method sweep, their paired tests, per-seed values."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("method_probe_posthoc", ROOT / "benchmarks" / "method_probe_posthoc.py")
posthoc = sys.modules["method_probe_posthoc"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(posthoc)


def write_probe(root: Path, run_id: str, strategy: str, weight: float, top1: float, init: float) -> None:
    folder = root / run_id
    folder.mkdir()
    record = {"status": "done", "mode": "cached_features", "metrics": {"top1_last": top1},
              "baselines": {"random init": {"top1_last": init}, "raw pixels": {"top1_last": 80.0}},
              "config": {"mask": {"strategy": strategy}, "loss": {"restore_weight": weight},
                         "eval": {"linear_norm": "batchnorm", "linear_lr": 1.0, "linear_epochs": 10,
                                  "linear_batch_size": 256}}}
    (folder / "result.json").write_text(json.dumps(record))


def test_arms_are_grouped_by_cell_and_paired_by_repeat(tmp_path, capsys):
    for r, (dino, attention, init) in enumerate([(60.0, 61.0, 50.0), (62.0, 64.0, 52.0), (61.0, 62.5, 51.0)]):
        write_probe(tmp_path, f"aaa-r{r}", "none", 0.0, dino, init)
        write_probe(tmp_path, f"bbb-r{r}", "attention", 0.6, attention, init)
    out = tmp_path / "posthoc.md"
    posthoc.main([str(tmp_path), "--results", str(out)])
    text = out.read_text()
    assert text == capsys.readouterr().out
    assert "linear_norm batchnorm, lr 1.0, 10 epochs, batch 256, cached_features" in text
    assert "| DINO (no mask, no restoration) | 3 | 61.00 ± 0.58 | +10.00 | reference |" in text
    # differences 1.0, 2.0, 1.5: mean 1.5, s.d. 0.5, t = 1.5 / (0.5 / sqrt 3) = 5.20 with 2 degrees of freedom
    assert "| MST, attention-guided mask | 3 | 62.50 ± 0.87 | +11.50 | +1.50, t(2) = 5.20, p = 0.035 |" in text
    assert "- MST, attention-guided mask: r0 61.00, r1 64.00, r2 62.50" in text


def test_an_unfinished_or_missing_probe_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match="no <run id>/result.json"):
        posthoc.main([str(tmp_path)])
    write_probe(tmp_path, "aaa-r0", "none", 0.0, 60.0, 50.0)
    (tmp_path / "aaa-r0" / "result.json").write_text(json.dumps({"status": "running"}))
    with pytest.raises(SystemExit, match="not a finished probe record"):
        posthoc.main([str(tmp_path)])
