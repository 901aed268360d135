"""Inputs that parse but cannot be used (issue 19): YAML that expands or nests without bound, files that are
not regular files, numbers beyond what they stand for, records and caches of the wrong shape, and values that
would forge a line on the terminal. Each ends in one line, at once, with nothing written.

The command lines run as separate processes, as a user runs them; the readers' bounds are unit-tested too.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobs.yaml_read import load_yaml
from mst.boundary import console_script
from mst.echo import shown
from mst.inputs import InputError, parse_json, read_json_file, read_regular

REPO = Path(__file__).resolve().parent.parent
BOMB = "\n".join([f"{chr(97)}: &a [x, x, x, x, x, x, x, x, x, x]"]
                 + [f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 10) + "]"
                    for i in range(1, 9)]) + "\n"  # 9 levels of 10: 10^9 leaves, 400 bytes
DEEP = "train: " + "[" * 5000 + "]" * 5000 + "\n"


def command(module: str, *args: str, cwd: Path = REPO, env: dict | None = None, timeout: float = 60
            ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False, env={**os.environ, **(env or {})})


def one_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def digest(folder: Path) -> dict[str, str]:
    """Every regular file under `folder` but the report's own cache, and its sha256 (what must not change)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink() and "report-cache" not in p.name}


# ------------------------------------------------------------------ the readers' bounds (unit)


def test_bomb_is_small_and_refused_before_it_expands():
    assert len(BOMB) < 1000
    started = time.monotonic()
    with pytest.raises(InputError, match="expands to more than 100000 values"):
        load_yaml(BOMB, "sweep file x.yaml")
    assert time.monotonic() - started < 1.0


def test_deep_yaml_is_refused_before_the_recursion_limit():
    with pytest.raises(InputError, match="nests more than 64 levels deep"):
        load_yaml(DEEP, "preset p.yaml")


def test_a_few_anchors_still_read():
    assert load_yaml("a: &n {x: 1}\nb: *n\nc: [*n, *n]\n", "f") == {"a": {"x": 1}, "b": {"x": 1},
                                                                      "c": [{"x": 1}, {"x": 1}]}


@pytest.mark.parametrize("kind", ["fifo", "folder", "device"])
def test_readers_refuse_what_is_not_a_regular_file_at_once(tmp_path, kind):
    path = tmp_path / "result.json"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    else:
        path = Path("/dev/zero")
    started = time.monotonic()
    with pytest.raises(InputError, match="not a regular file"):
        read_json_file(path, "record")
    assert time.monotonic() - started < 1.0


def test_readers_bound_size_depth_and_integer_width(tmp_path):
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"pad": "x" * 2000}))
    with pytest.raises(InputError, match="more than the 1000"):
        read_regular(big, "record", limit=1000)
    with pytest.raises(InputError, match="nests more than 64 levels"):
        parse_json("[" * 3000 + "]" * 3000, "record", "r.json")
    with pytest.raises(InputError, match="integer of 5000 digits"):
        parse_json('{"seed": ' + "9" * 5000 + "}", "record", "r.json")
    # brackets inside strings are not nesting; 19-digit integers are fine
    assert parse_json(json.dumps({"s": "[" * 200, "n": 2**63 - 1}), "record", "r.json")["n"] == 2**63 - 1


# ------------------------------------------------------------------ class 1: YAML through the command lines


@pytest.mark.parametrize("text,why", [(BOMB, "expands to more than"), (DEEP, "nests more than 64")])
def test_commands_refuse_yaml_bombs_and_deep_nesting_in_one_line(tmp_path, text, why):
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    runs = tmp_path / "runs"
    for module, args in (("jobs.cli.pretrain", ["--preset", str(path), "--out", str(tmp_path / "out")]),
                         ("jobs.cli.sweep", ["submit", str(path), "--cluster", "local", "--runs", str(runs),
                                             "--dry-run"]),
                         ("jobs.cli.sweep", ["check", "--cluster", str(path)]),
                         ("analysis.cli", ["tables", "--runs", str(tmp_path), "--sweep", str(path)])):
        started = time.monotonic()
        line = one_line(command(module, *args, timeout=30))
        assert str(path) in line and why in line, line
        assert time.monotonic() - started < 15  # one interpreter start; never the expansion
    assert not runs.exists() and not (tmp_path / "out").exists()


def test_a_deep_set_value_is_one_line(tmp_path):
    line = one_line(command("jobs.cli.pretrain", "--preset", "tiny", "--out", str(tmp_path / "o"),
                            "--set", "optim.lr=" + "[" * 3000))
    assert "override 'optim.lr' nests more than 64 levels" in line


# ------------------------------------------------------------------ the boundary and what it echoes


def test_an_argument_cannot_forge_a_second_line_or_drive_the_terminal(tmp_path):
    hostile = "x.yaml\nerror: all fine\x1b[2J\r"
    proc = command("jobs.cli.pretrain", "--preset", hostile, "--out", str(tmp_path / "o"))
    line = one_line(proc)
    assert "\x1b" not in proc.stderr and "\r" not in proc.stderr
    assert "x.yaml\\x0aerror: all fine\\x1b[2J\\x0d" in line, line
    assert shown("a\u202eb\tc") == "a\\u202eb\\x09c"


def test_a_bug_is_one_line_and_its_traceback_shows_with_mst_debug(capsys, monkeypatch):
    @console_script
    def main():
        return {}["missing"]

    monkeypatch.delenv("MST_DEBUG", raising=False)
    with pytest.raises(SystemExit) as stop:
        main()
    err = capsys.readouterr().err
    assert stop.value.code == 1 and err.count("\n") == 1
    assert err.startswith("error: internal error (KeyError: 'missing'); this is a bug") and "MST_DEBUG=1" in err
    monkeypatch.setenv("MST_DEBUG", "1")
    with pytest.raises(KeyError):
        main()


def test_an_input_error_escaping_a_front_end_is_its_own_line(capsys, monkeypatch):
    @console_script
    def main():
        read_json_file("/dev/null/x", "record")

    monkeypatch.delenv("MST_DEBUG", raising=False)
    with pytest.raises(SystemExit) as stop:
        main()
    err = capsys.readouterr().err
    assert stop.value.code == 1 and err.startswith("error: cannot use /dev/null/x: Not a directory; ")


# ------------------------------------------------------------------ class 2: numbers that parse, mean nothing


def _slurm_profile(tmp_path: Path, **sections: str) -> Path:
    from conftest import _profile

    path = _profile(tmp_path)
    text = path.read_text()
    for key, value in sections.items():
        text = "\n".join(line for line in text.splitlines() if not line.startswith(f"{key}:")) + f"\n{key}: {value}\n"
    path.write_text(text)
    return path


PROFILE_NUMBERS = {
    "mem": ("resources", "{nodes: 1, tasks_per_node: 1, cpus_per_task: 1, mem_gb: 1.0e+308, time_min: 10}",
            "resources.mem_gb is 1e+308, more than Slurm takes"),
    "time": ("downstream", "{nodes: 1, tasks_per_node: 1, cpus_per_task: 1, mem_gb: 1, time_min: 1099511627776}",
             "downstream.time_min is 1099511627776, more than Slurm takes"),
    "delay": ("preemption", "{signal: USR2, delay_s: 4294967296, max_requeues: 3}",
              "preemption.delay_s (4294967296) must be at most 65535"),
    "array": ("limits", "{array_size: 9223372036854775807, array_parallelism: 4}",
              "limits.array_size and limits.array_parallelism must be at most"),
    "gres": ("accelerators", "{kind: dcu, per_node: 4, request: gres, gres: 'dcu:" + "9" * 5000 + "'}",
             "accelerators.gres is 'dcu:"),
}


@pytest.mark.parametrize("case", sorted(PROFILE_NUMBERS))
def test_profile_numbers_beyond_slurm_are_refused_before_anything_is_printed(tmp_path, case):
    from conftest import _fake_slurm, _sweep

    section, value, why = PROFILE_NUMBERS[case]
    fake = _fake_slurm(tmp_path)
    runs = tmp_path / "runs"
    proc = subprocess.run([sys.executable, "-m", "jobs.cli.sweep", "submit", str(_sweep(tmp_path)), "--cluster",
                           str(_slurm_profile(tmp_path, **{section: value})), "--runs", str(runs), "--dry-run"],
                          cwd=tmp_path, env=fake["env"], capture_output=True, text=True, timeout=60, check=False)
    line = one_line(proc)
    assert why in line and len(line) < 600, line
    assert "#!/bin/bash" not in proc.stdout and not runs.exists() and not fake["log"].exists()


# ------------------------------------------------------------------ class 3: records and caches, wrong shape


@pytest.fixture()
def runs(tmp_path):
    from analysis.synthetic import write_sweep_records
    from jobs.sweep import load_sweep

    root = tmp_path / "runs"
    write_sweep_records(root, load_sweep("loss_weight_smoke").expand())
    return root


def _records(runs: Path) -> list[Path]:
    return sorted(runs.glob("loss_weight_smoke/*/knn/result.json"))


def _report(runs: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return command("analysis.cli", *args, "--runs", str(runs), "--sweep", "loss_weight_smoke", timeout=timeout)


HOSTILE_RECORDS = {
    "fifo": (lambda p: (p.unlink(), os.mkfifo(p)), "is a FIFO, not a regular file"),
    "folder": (lambda p: (p.unlink(), p.mkdir()), "is a folder, not a regular file"),
    "list": (lambda p: p.write_text("[1, 2, 3]"), "not a JSON object (list)"),
    "huge_int": (lambda p: p.write_text(re.sub(r'"seed": \d+', '"seed": ' + "7" * 5000, p.read_text())),
                 "holds an integer of 5000 digits"),
    "deep": (lambda p: p.write_text('{"schema": 1, "cell": ' + "[" * 5000 + "]" * 5000 + "}"),
             "nests more than 64 levels deep"),
    "wrong_type": (lambda p: p.write_text(p.read_text().replace('"metrics": {', '"metrics": {"top1@7": "x", ')),
                   "is not a number"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_RECORDS))
def test_a_record_of_the_wrong_shape_is_skipped_and_named_at_once(runs, case):
    plant, why = HOSTILE_RECORDS[case]
    target = _records(runs)[0]
    plant(target)
    before = digest(runs)
    started = time.monotonic()
    proc = _report(runs, "status", timeout=20)
    assert time.monotonic() - started < 15
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    out = " ".join(proc.stdout.split())
    assert f"skipped record {target}" in out and why in out, proc.stdout
    tables = _report(runs, "tables", "--format", "md", timeout=20)
    assert tables.returncode == 0 and "Traceback" not in tables.stderr, tables.stderr
    assert "Skipped 1 unusable record" in tables.stdout
    assert digest(runs) == before


@pytest.mark.parametrize("cache", ['{"version": 2, "schema": 1, "entries": []}',
                                   '{"version": 2, "schema": 1, "entries": {"%s": [1, 2, 3, "row"]}}',
                                   '{"version": 2, "schema": 1, "entries": {"%s": "STAMP"}}',
                                   "[" * 5000 + "]" * 5000, "fifo"])
def test_a_report_cache_of_the_wrong_shape_is_rebuilt(runs, cache):
    clean = _report(runs, "tables", "--format", "csv")
    assert clean.returncode == 0, clean.stderr
    path = runs / "loss_weight_smoke" / ".report-cache.json"
    entries = json.loads(path.read_text())["entries"]
    key = min(entries)
    path.unlink()
    if cache == "fifo":
        os.mkfifo(path)
    elif "STAMP" in cache:  # the right stamp, a row of the wrong shape: must not reach the table
        row = {**entries[key][3], "metrics": "not a mapping"}
        path.write_text(json.dumps({"version": 2, "schema": 1, "entries": {key: entries[key][:3] + [row]}}))
    else:
        path.write_text(cache.replace("%s", key))
    proc = _report(runs, "tables", "--format", "csv", timeout=20)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout == clean.stdout


MANIFEST_LINES = {
    "huge_int": (('{"run_id": "a", "stage": "pretrain", "job_id": ' + "1" * 5000 + ', "cluster": "x", '
                  '"time": "2026-01-01T00:00:00Z"}'), "line 1 holds an integer of 5000 digits"),
    "not_a_date": (('{"run_id": "a", "stage": "pretrain", "job_id": "12", "cluster": "x", '
                    '"time": "2026-13-45T99:99:99Z"}'), "line 1 has an unusable time '2026-13-45T99:99:99Z'"),
}


@pytest.mark.parametrize("case", sorted(MANIFEST_LINES))
def test_a_manifest_line_that_parses_but_means_nothing_is_one_line(runs, case):
    text, why = MANIFEST_LINES[case]
    manifest = runs / "loss_weight_smoke" / "manifest.jsonl"
    manifest.write_text(text + "\n")
    before = digest(runs)
    for module, args in (("analysis.cli", ["status", "--runs", str(runs), "--sweep", "loss_weight_smoke"]),
                         ("jobs.cli.sweep", ["status", "loss_weight_smoke", "--runs", str(runs)])):
        line = one_line(command(module, *args))
        assert str(manifest) in line and why in line, line
    assert digest(runs) == before


def test_a_manifest_that_is_a_fifo_never_blocks(runs):
    os.mkfifo(runs / "loss_weight_smoke" / "manifest.jsonl")
    started = time.monotonic()
    proc = command("jobs.cli.sweep", "status", "loss_weight_smoke", "--runs", str(runs), timeout=20)
    assert time.monotonic() - started < 15 and "Traceback" not in proc.stderr, proc.stderr


# ------------------------------------------------------------------ class 6: report outputs


@pytest.mark.parametrize("fault", ["ENOSPC", "EROFS"])
@pytest.mark.parametrize("command_name", ["tables", "plot"])
def test_report_out_on_a_full_disk_or_read_only_folder_is_one_line_and_leaves_nothing(runs, tmp_path, fault,
                                                                                      command_name):
    out = tmp_path / "out"
    out.mkdir()
    (out / "kept.txt").write_text("mine")
    code = f"""
import errno, os, sys
real = os.fsync
def failing(fd):
    if os.path.isfile(f"/proc/self/fd/{{fd}}"):   # the file's data, not its folder
        raise OSError(errno.{fault}, os.strerror(errno.{fault}))
    return real(fd)
os.fsync = failing
from analysis.cli import main
sys.exit(main(["{command_name}", "--runs", "{runs}", "--sweep", "loss_weight_smoke", "--out", "{out}"]))
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False)
    line = one_line(proc)
    assert line.startswith(f"error: cannot write {out}/") and "nothing was half-written" in line, line
    assert sorted(p.name for p in out.iterdir()) == ["kept.txt"]  # no temp file, no part of a table


@pytest.mark.parametrize("command_name", ["tables", "plot"])
def test_report_out_naming_an_existing_file_is_refused_and_the_file_kept(runs, tmp_path, command_name):
    out = tmp_path / "notes.txt"
    out.write_text("my notes")
    line = one_line(_report(runs, command_name, "--out", str(out)))
    assert f"--out {out} is a file, not a folder" in line
    assert out.read_text() == "my notes"


# ------------------------------------------------------------------ class 7: text that reaches another program


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised_and_numbers_stay(runs, tmp_path):
    import csv

    from analysis.csv_safe import neutralise

    text = (REPO / "sweeps" / "loss_weight.yaml").read_text()
    for old, new in (('label: "0.2"', 'label: "=HYPERLINK(\\"http://evil\\")"'), ('label: "0.4"', 'label: "-1.5"'),
                     ('label: "0.6"', 'label: "@SUM(A1)\\x1b[2J"'), ('label: "0.8"', 'label: "+1+cmd"'),
                     ("row_header: [Restore weight]", 'row_header: ["\\tweight"]')):
        assert old in text
        text = text.replace(old, new)
    sweep = tmp_path / "loss_weight.yaml"
    sweep.write_text(text)
    proc = command("analysis.cli", "tables", "--runs", str(runs), "--sweep", str(sweep), "--budget", "smoke",
                   "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.reader(proc.stdout.splitlines()))
    assert rows[0][2] == "'\tweight"
    labels = [r[2] for r in rows[1:]]
    assert labels == ["'=HYPERLINK(\"http://evil\")", "-1.5", "'@SUM(A1)\x1b[2J", "'+1+cmd"]
    assert all(float(r[4]) > 0 for r in rows[1:]) and float(rows[1][12]) < 0  # means and deltas stay numbers
    assert [neutralise(v) for v in ("-1.5", "+2e-3", "\r1", 3.0, "-x")] == ["-1.5", "+2e-3", "'\r1", 3.0, "'-x"]
    term = command("analysis.cli", "tables", "--runs", str(runs), "--sweep", str(sweep), "--budget", "smoke")
    assert term.returncode == 0 and "\x1b" not in term.stdout and "@SUM(A1)\\x1b[2J" in term.stdout


# ------------------------------------------------------------------ class 4: foreign checkpoints


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """checkpoint.pt of a two-step tiny pre-training (vit_test)."""
    from jobs.config_io import load_config
    from mst.train import run_pretrain

    out = tmp_path_factory.mktemp("foreign")
    run_pretrain(load_config("tiny", ["train.epochs=1", "data.train_subset=64", "train.threads=1"]), out,
                 show_progress=False)
    return out / "checkpoint.pt"


@pytest.mark.parametrize("other,why", [
    (["model.arch=vit_smoke"], "architecture 'vit_test', this run's 'vit_smoke'; config hash "),
    (["optim.lr=0.123"], "(optim.lr "),
])
def test_a_foreign_checkpoint_in_a_fresh_folder_is_refused_and_left_untouched(tmp_path, tiny_checkpoint, other,
                                                                               why):
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "checkpoint.pt").write_bytes(tiny_checkpoint.read_bytes())
    before = digest(fresh)
    sets = [a for s in ["train.epochs=1", "data.train_subset=64", "train.threads=1", *other] for a in ("--set", s)]
    line = one_line(command("jobs.cli.pretrain", "--preset", "tiny", *sets, "--out", str(fresh), "--quiet",
                            timeout=300))
    assert f"{fresh / 'checkpoint.pt'} was written by another run: " in line and why in line, line
    after = {k: v for k, v in digest(fresh).items() if k != ".lock"}  # the folder lock, held while refusing
    assert after == before  # no record, no claim, no log; the checkpoint byte-identical
    assert not (fresh / "result.json").exists() and not (fresh / "run.json").exists()


# ------------------------------------------------------------------ class 5: hostile data files


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG of under 100 bytes whose header declares width x height RGB pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
            + chunk(b"IEND", b""))


HOSTILE_IMAGES = {"bomb.png": png_bomb(), "empty.jpg": b"", "text.png": b"just some text, no image"}


def image_folder(root: Path, hostile: str | None = None) -> Path:
    """root/{train,val}/{cat,dog}/*.png (16 images per class), with one hostile file in train/cat."""
    import numpy as np
    from PIL import Image

    generator = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in ("cat", "dog"):
            (root / split / name).mkdir(parents=True)
            for k in range(16):
                pixels = generator.integers(0, 256, (36, 36, 3), dtype="uint8")
                Image.fromarray(pixels).save(root / split / name / f"{k}.png")
    if hostile:
        (root / "train" / "cat" / hostile).write_bytes(HOSTILE_IMAGES[hostile])
    return root


@pytest.mark.parametrize("name", sorted(HOSTILE_IMAGES))
def test_an_image_that_cannot_be_decoded_is_refused_naming_the_file_at_once(tmp_path, name):
    from mst.data.decode import UnreadableImage
    from mst.data.folder import load_image

    path = tmp_path / name
    path.write_bytes(HOSTILE_IMAGES[name])
    started = time.monotonic()
    with pytest.raises(UnreadableImage) as info:
        load_image(str(path))
    assert time.monotonic() - started < 1.0
    assert str(info.value).startswith(f"image file {path} ") and "\n" not in str(info.value)
    if name == "bomb.png":
        assert "declares more than 89478485 pixels" in str(info.value) and "decompression bomb" in str(info.value)


@pytest.mark.parametrize("backend,workers", [("v2", 0), ("batched", 1), ("split", 1)])
def test_every_backend_blames_the_file_never_the_output_folder(tmp_path, backend, workers):
    root = image_folder(tmp_path / "images", "bomb.png")
    out = tmp_path / "out"
    sets = ["data.name=folder", f"data.root={root}", f"data.index_dir={tmp_path / 'index'}", "train.epochs=1",
            "data.train_subset=0", f"augment.backend={backend}", f"data.num_workers={workers}", "train.threads=1"]
    proc = command("jobs.cli.pretrain", "--preset", "tiny", *[a for s in sets for a in ("--set", s)],
                   "--out", str(out), "--quiet", timeout=300)
    bomb = root / "train" / "cat" / "bomb.png"
    if backend == "split":  # the split pipeline's workers leave an unreadable file out of its batch
        assert proc.returncode == 0, proc.stderr
        assert f"skipping unreadable image {bomb}" in proc.stderr
        assert json.loads((out / "result.json").read_text())["metrics"]["skipped_images"] == 1
        return
    line = one_line(proc)
    assert line.startswith(f"error: image file {bomb} declares more than 89478485 pixels"), line
    assert str(out) not in line


def test_a_fashion_mnist_gzip_bomb_is_refused_in_one_line(tmp_path):
    import gzip
    import shutil

    from mst.config.schema import DataConfig
    from mst.data import DatasetMissingError, build_dataset

    fmnist = Path("/usr/share/datasets/fashion-mnist")
    shutil.copy(fmnist / "t10k-labels-idx1-ubyte.gz", tmp_path)
    bomb = tmp_path / "t10k-images-idx3-ubyte.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as f:  # 100 MB of zeros in about 100 kB
        for _ in range(100):
            f.write(b"\0" * (1 << 20))
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(DatasetMissingError, match=f"{bomb} inflates to more than"):
        build_dataset(DataConfig(name="fashion_mnist", root=str(tmp_path), num_workers=0), "test")
    bomb.unlink()
    os.mkfifo(bomb)
    started = time.monotonic()
    with pytest.raises(DatasetMissingError, match="is a FIFO, not a regular file"):
        build_dataset(DataConfig(name="fashion_mnist", root=str(tmp_path), num_workers=0), "test")
    assert time.monotonic() - started < 1.0


# ------------------------------------------------------------------ class 8: links out of the runs root


@pytest.mark.parametrize("what", ["run", "record"])
def test_a_link_out_of_the_runs_root_is_not_read_and_nothing_is_written_there(runs, tmp_path, what):
    record = _records(runs)[0]
    elsewhere = tmp_path / "elsewhere"
    if what == "run":  # a run folder replaced by a link to a copy outside the root
        shutil.copytree(record.parent.parent, elsewhere)
        shutil.rmtree(record.parent.parent)
        record.parent.parent.symlink_to(elsewhere, target_is_directory=True)
    else:  # the record itself a link to a file outside
        elsewhere.mkdir()
        (elsewhere / "result.json").write_bytes(record.read_bytes())
        record.unlink()
        record.symlink_to(elsewhere / "result.json")
    outside = digest(elsewhere)
    proc = _report(runs, "status")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    out = " ".join(proc.stdout.split())
    assert f"skipped record {record}" in out and "links out of the runs root" in out, proc.stdout
    tables = _report(runs, "tables", "--format", "csv")
    assert tables.returncode == 0 and "Traceback" not in tables.stderr, tables.stderr
    assert digest(elsewhere) == outside and not list(elsewhere.rglob(".*"))


@pytest.mark.parametrize("cache", ["numbers", "fifo", "deep"])
def test_a_folder_index_of_the_wrong_shape_is_listed_again(tmp_path, cache):
    from mst.data.folder import ImageFolderDataset

    root = image_folder(tmp_path / "images")
    index = tmp_path / "index"
    first = ImageFolderDataset(root, "train", index)
    (written,) = index.iterdir()
    data = json.loads(written.read_text())
    written.unlink()
    if cache == "fifo":
        os.mkfifo(written)
    elif cache == "numbers":  # the right folder and classes; file names that are not names
        written.write_text(json.dumps({**data, "files": [[1, 2], [3]]}))
    else:
        written.write_text(json.dumps({**data, "files": "["}).replace('"["', "[" * 3000 + "]" * 3000))
    started = time.monotonic()
    again = ImageFolderDataset(root, "train", index)
    assert time.monotonic() - started < 5 and again.samples == first.samples


@pytest.mark.parametrize("planted,why", [
    ({"stage": "linear_cls", "config_hash": "0123456789ab"}, "its config hash is 0123456789ab, this run's "),
    ({"stage": "supervised"}, "is a checkpoint of the 'supervised' stage, not 'linear_cls'"),
])
def test_an_evaluation_stage_refuses_a_foreign_checkpoint_before_writing(tmp_path, planted, why):
    from jobs.config_io import load_config
    from mst.checkpoint import CheckpointError, atomic_torch_save
    from mst.eval.stage import run_stage

    out = tmp_path / "linear_cls"
    out.mkdir()
    atomic_torch_save(planted, out / "checkpoint.pt")
    before = digest(out)

    def body(stage):
        raise AssertionError("the stage ran on a foreign checkpoint")

    with pytest.raises(CheckpointError, match=why):
        run_stage("linear_cls", load_config("tiny"), out, None, body)
    assert {k: v for k, v in digest(out).items() if k != ".lock"} == before
