"""Files a run or a report writes or reads beyond records (issue 19): report outputs on a full disk, a read-only
folder or a file; CSV cells a spreadsheet would run; checkpoints of another run; images and data files that
cannot be decoded. Each ends in one line naming the file, with nothing half-written and nothing touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.hostile import REPO, command, digest, one_line, synthetic_runs
from helpers.hostile import report as _report


@pytest.fixture()
def runs(tmp_path):
    return synthetic_runs(tmp_path / "runs")


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
    header, body = rows[0], rows[1:]
    col = {name: i for i, name in enumerate(header)}
    assert header[3] == "'\tweight"  # the row header's column, after table, sweep and budget
    labels = [r[3] for r in body if not r[col["baseline"]]]
    assert labels == ["'=HYPERLINK(\"http://evil\")", "-1.5", "'@SUM(A1)\x1b[2J", "'+1+cmd"]
    numbers = [r[col[name]] for r in body for name in ("mean", "se", "paper") if r[col[name]]]
    assert len(numbers) >= 8 and all(float(v) == float(v) for v in numbers)  # numbers stay numbers, unprefixed
    assert all(float(r[col["mean"]]) > 0 for r in body)
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
