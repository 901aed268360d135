"""mst-eval: light --help, one-line errors with exit 2 and nothing written, real runs on a tiny checkpoint."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from jobs.cli.evaluate import main
from mst.stages import STAGES

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder with a (two-step, real) pre-training stage in pretrain/."""
    from jobs.config_io import load_config
    from mst.train import run_pretrain

    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("run")
    run_pretrain(load_config("tiny", ["train.epochs=1", "data.train_subset=64", "train.threads=1"]),
                 run / "pretrain", show_progress=False)
    return run


def cli(*args):
    with pytest.raises(SystemExit) as done:
        main(list(args))
    return done.value.code


def test_help_does_not_import_torch():
    code = ("import sys; from jobs.cli.evaluate import build_parser; build_parser().format_help(); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    out = subprocess.run([sys.executable, "-m", "jobs.cli.evaluate", "linear", "--help"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert "--probe" in out and "--cached-features" in out


@pytest.mark.parametrize("args,expected", [
    (["knn", "--checkpoint", "{tmp}/nowhere"], "folder does not exist"),
    (["knn", "--checkpoint", "{tmp}"], "missing {tmp}/checkpoint.pt"),
    (["knn", "--checkpoint", "{run}", "--set", "eval.knn_kz=3"], "unknown config key 'eval.knn_kz'"),
    (["attention", "--checkpoint", "{run}", "--images", "not_a_sample"], "neither a file nor a scikit-image"),
    (["attention", "--checkpoint", "{run}", "--size", "30"], "not a positive multiple of the patch size 8"),
    (["attention", "--checkpoint", "{run}", "--video", "{tmp}/frames"], "frame folder"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(run_dir, tmp_path, capsys, args, expected):
    out = tmp_path / "out"
    fill = {"tmp": str(tmp_path), "run": str(run_dir)}
    code = cli(*[a.format(**fill) for a in args], "--out", str(out))
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and expected.format(**fill) in err
    assert not out.exists()


def test_knn_then_linear_from_the_run_folder(run_dir, tmp_path, capsys):
    # the run folder is given (not pretrain/ itself): its stored config is used, --set goes on top
    assert cli("knn", "--checkpoint", str(run_dir), "--out", str(tmp_path / "knn"), "--quiet",
               "--set", "eval.knn_ks=[5]", "--set", "train.threads=1") == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["status"] == "done" and set(summary) >= {"top1@5", "top5@5", "weights_sha256"}
    record = json.loads((tmp_path / "knn" / "result.json").read_text())
    assert record["config"]["model"]["arch"] == "vit_test" and record["config"]["eval"]["knn_ks"] == [5]
    assert set(record["metrics"]) >= set(STAGES["knn"].metric_names([5]))  # what the stage registry says

    assert cli("linear", "--checkpoint", str(run_dir), "--out", str(tmp_path / "lin"), "--quiet",
               "--probe", "dino", "--cached-features", "--set", "eval.linear_epochs=1") == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["mode"] == "cached_features" and "top1_best" in summary
    record = json.loads((tmp_path / "lin" / "result.json").read_text())
    assert record["stage"] == "linear_dino" and set(record["metrics"]) >= set(STAGES["linear_dino"].metrics)

    # a finished folder is not re-run, and a folder of another stage is refused
    assert cli("knn", "--checkpoint", str(run_dir), "--out", str(tmp_path / "knn"), "--quiet") == 0
    assert "already done" in capsys.readouterr().out
    assert cli("linear", "--checkpoint", str(run_dir), "--out", str(tmp_path / "knn"), "--quiet") == 2
    assert "holds a finished 'knn' stage" in capsys.readouterr().err
