"""`mst-report` as a user runs it: a separate process, one-line errors, files written, never torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from analysis.synthetic import write_sweep_records
from jobs.sweep import load_sweep

REPO = Path(__file__).resolve().parent.parent


def report(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analysis.cli", *args], check=False, cwd=cwd, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for name in ("loss_weight_smoke", "bert_smoke"):
        write_sweep_records(root, load_sweep(name).expand())
    return root


def test_the_report_never_imports_torch(runs, tmp_path):
    code = f"""
import sys
import analysis.cli
light = not any(m in sys.modules for m in ("torch", "pandas", "matplotlib"))  # --help stays instant
for argv in (["tables", "--runs", "{runs}", "--test"], ["status", "--runs", "{runs}"],
             ["plot", "--runs", "{runs}", "--out", "{tmp_path}"]):
    assert analysis.cli.main(argv) == 0
print(light, "torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "True False"


def test_help():
    out = report("--help")
    assert out.returncode == 0 and "tables" in out.stdout and "status" in out.stdout and "plot" in out.stdout


def test_tables_to_files(runs, tmp_path):
    for fmt, ext in (("md", "md"), ("latex", "tex"), ("csv", "csv"), ("term", "txt")):
        out = report("tables", "--runs", str(runs), "--format", fmt, "--out", str(tmp_path / fmt))
        assert out.returncode == 0, out.stderr
        files = sorted(p.name for p in (tmp_path / fmt).iterdir())
        assert files == [f"bert_smoke.{ext}", f"loss_weight_smoke.{ext}"]
    md = (tmp_path / "md" / "loss_weight_smoke.md").read_text()
    assert "| 0.8 |" in md and "73.6" in md and "(n=2)" in md


def test_tables_one_sweep_to_stdout(runs):
    out = report("tables", "--runs", str(runs), "--sweep", "bert_smoke", "--format", "md")
    assert out.returncode == 0, out.stderr
    assert "Table A4" in out.stdout and "Section A10" not in out.stdout
    assert "| Random | BERT | Masked tokens | No |" in out.stdout and "| 61.0 ± 0.22* |" in out.stdout
    # the sweep at its budget, named either way
    budget = report("tables", "--runs", str(runs), "--sweep", "bert", "--budget", "smoke", "--format", "md")
    assert budget.returncode == 0 and budget.stdout == out.stdout, budget.stderr


@pytest.mark.parametrize("args,message", [
    (["tables", "--sweep", "nosuch"], "error: unknown sweep 'nosuch'; choose one of"),
    (["tables", "--format", "html"], "error: unknown format 'html'; choose one of term, md, latex, csv"),
    (["status", "--sweep", "loss_weigth_smoke"], "error: unknown sweep 'loss_weigth_smoke'; did you mean"),
    (["tables", "--colour"], "error: unrecognized arguments: --colour; see mst-report --help"),
    (["tables", "--budget", "smoke"], "error: --budget needs --sweep NAME"),
    (["tables", "--sweep", "bert", "--budget", "huge"], "error: sweep 'bert' has no budget 'huge'"),
])
def test_bad_input_is_one_line_and_exit_2(runs, tmp_path, args, message):
    out = report(*args, "--runs", str(runs), "--out", str(tmp_path / "out")) if args[0] == "tables" else \
        report(*args, "--runs", str(runs))
    assert out.returncode == 2
    assert out.stderr.startswith(message) and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert not (tmp_path / "out").exists()


def test_missing_runs_folder(tmp_path):
    out = report("tables", "--runs", str(tmp_path / "nope"))
    assert out.returncode == 2
    assert out.stderr == f"error: runs folder {tmp_path / 'nope'} does not exist; pass --runs DIR (where " \
                         f"mst-sweep wrote the runs)\n"
    empty = tmp_path / "empty"
    empty.mkdir()
    out = report("status", "--runs", str(empty))
    assert out.returncode == 2 and out.stderr.startswith("error: no sweep folders under")


def test_status_and_plot(runs, tmp_path):
    out = report("status", "--runs", str(runs), "--sweep", "loss_weight_smoke")
    assert out.returncode == 0, out.stderr
    assert "sweep loss_weight_smoke: 8 runs" in out.stdout and "preempted" in out.stdout
    out = report("plot", "--runs", str(runs), "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    for name in ("loss_weight_smoke", "bert_smoke"):
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cluster_names_the_runs_root_and_runs_overrides_it(runs, tmp_path):
    """--cluster reads the records under the profile's storage.run_root (without torch); --runs still wins."""
    text = (REPO / "clusters" / "local-v100.yaml").read_text().replace("run_root: runs", f"run_root: {runs}")
    assert str(runs) in text
    (tmp_path / "site.yaml").write_text(text.replace("name: local-v100", "name: site"))
    by_runs = report("tables", "--runs", str(runs), "--sweep", "bert_smoke", "--format", "md")
    by_cluster = report("tables", "--cluster", str(tmp_path / "site.yaml"), "--sweep", "bert_smoke", "--format", "md",
                        cwd=tmp_path)
    assert by_cluster.returncode == 0, by_cluster.stderr
    assert by_runs.returncode == 0 and by_runs.stdout.count("\n") > 3
    assert by_cluster.stdout == by_runs.stdout
    code = f"""
import sys
import analysis.cli
assert analysis.cli.main(["status", "--cluster", "{tmp_path / 'site.yaml'}"]) == 0
print("torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], check=False, cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert "sweep loss_weight_smoke: 8 runs" in out.stdout and out.stdout.strip().splitlines()[-1] == "False"
    # local-v100's own root (./runs) does not exist in tmp_path: --runs overrides the profile's
    assert report("status", "--cluster", "local-v100", cwd=tmp_path).stderr.startswith("error: runs folder runs ")
    assert report("status", "--cluster", "local-v100", "--runs", str(runs), cwd=tmp_path).returncode == 0
    bad = report("tables", "--cluster", "dcu12", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr == "error: unknown cluster 'dcu12'; did you mean dcu128?\n"
