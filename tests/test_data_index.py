"""The cached file list of image folders: listed once, JSON, invalidated by any change, empty classes reported."""

import json
import logging
import os

import pytest
from PIL import Image

from mst.data import index as index_module
from mst.data.folder import ImageFolderDataset


def _folder(root, classes=("cat", "dog"), per_class=3):
    for name in classes:
        (root / "train" / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(root / "train" / name / f"{i}.jpg")
    return root


@pytest.fixture
def walks(monkeypatch):
    calls = []
    original = index_module.os.walk

    def counting(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)
    monkeypatch.setattr(index_module.os, "walk", counting)
    return calls


def test_listed_once_then_read_from_the_json_cache(tmp_path, walks):
    root, cache = _folder(tmp_path / "data"), tmp_path / "cache"
    first = ImageFolderDataset(root, "train", cache)
    assert len(walks) == 2 and len(first) == 6
    again = ImageFolderDataset(root, "train", cache)
    assert len(walks) == 2                                         # no second listing
    assert again.samples == first.samples and again.classes == ["cat", "dog"]
    (written,) = cache.iterdir()
    data = json.loads(written.read_text())                         # plain JSON data
    assert data["classes"] == ["cat", "dog"] and data["files"][0] == ["0.jpg", "1.jpg", "2.jpg"]


def test_a_new_file_or_a_damaged_cache_means_a_new_listing(tmp_path, walks):
    root, cache = _folder(tmp_path / "data"), tmp_path / "cache"
    ImageFolderDataset(root, "train", cache)
    Image.new("RGB", (8, 8)).save(root / "train" / "dog" / "new.jpg")
    os.utime(root / "train" / "dog", ns=(1, 10**18))               # whatever the filesystem's mtime granularity
    grown = ImageFolderDataset(root, "train", cache)
    assert len(grown) == 7 and len(walks) == 4
    for f in cache.iterdir():
        f.write_text('{"folder": "elsewhere", "classes": [], "files": "__import__(\'os\')"}')
    again = ImageFolderDataset(root, "train", cache)
    assert again.samples == grown.samples and len(walks) == 6


def test_an_empty_class_folder_is_one_line_and_keeps_its_label(tmp_path, caplog):
    root = _folder(tmp_path / "data")
    (root / "train" / "bird").mkdir()
    with caplog.at_level(logging.WARNING):
        dataset = ImageFolderDataset(root, "train", tmp_path / "cache")
    assert dataset.classes == ["bird", "cat", "dog"] and set(dataset.targets) == {1, 2}
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "bird" in lines[0] and "no images" in lines[0]
