"""Data sets: real Fashion-MNIST, image folders written by the tests, one-line errors, seeded augmentation."""

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from mst.augment import AugmentedDataset, MultiCropAugment
from mst.config import AugmentConfig, DataConfig
from mst.data import DataError, DatasetMissingError, build_dataset

FMNIST = "/usr/share/datasets/fashion-mnist"


def fmnist(**kw) -> DataConfig:
    return DataConfig(name="fashion_mnist", root=FMNIST, num_workers=0, **kw)


def test_fashion_mnist_official_split_shapes_and_padding():
    train, test = build_dataset(fmnist(), "train"), build_dataset(fmnist(), "test")
    assert (len(train), len(test)) == (60_000, 10_000)
    assert torch.bincount(train.targets).tolist() == [6000] * 10
    assert torch.bincount(test.targets).tolist() == [1000] * 10
    assert len(train.classes) == 10
    image, label = train[123]
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8 and isinstance(label, int)
    assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])  # greyscale as RGB
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert train.images[:, border].max() == 0  # the 2 px frame is zero-padding in every image
    # the interior is the file's bytes: decode image 123 and its label independently of the loader
    raw = gzip.decompress(Path(FMNIST, "train-images-idx3-ubyte.gz").read_bytes())
    expected = np.frombuffer(raw, np.uint8, count=28 * 28, offset=16 + 123 * 28 * 28).reshape(28, 28)
    assert torch.equal(image[0, 2:30, 2:30], torch.from_numpy(expected.copy()))
    labels = gzip.decompress(Path(FMNIST, "train-labels-idx1-ubyte.gz").read_bytes())
    assert label == labels[8 + 123]
    assert len(build_dataset(fmnist(), "val")) == 10_000  # "val" is the evaluation split too


def test_subsets_are_stable_nested_and_roughly_balanced():
    small = build_dataset(fmnist(test_subset=1000), "test")
    again = build_dataset(fmnist(test_subset=1000), "test")
    large = build_dataset(fmnist(test_subset=2000), "test")
    assert small.indices == again.indices and len(small) == 1000
    assert set(small.indices) < set(large.indices)
    assert small.indices != list(range(1000))  # a permutation, not the file's first images
    counts = torch.bincount(large.targets, minlength=10)
    assert counts.min() >= 150 and counts.max() <= 250  # 200 expected per class
    full = build_dataset(fmnist(), "test")
    i = small.indices[17]
    assert int(small.targets[17]) == int(full.targets[i])
    assert torch.equal(small[17][0], full[i][0])
    train = build_dataset(fmnist(train_subset=500, test_subset=1000), "train")
    assert len(train) == 500


def test_subset_larger_than_split_is_one_line_error():
    with pytest.raises(DataError) as info:
        build_dataset(fmnist(test_subset=20_000), "test")
    message = str(info.value)
    assert "data.test_subset=20000" in message and "10000" in message and "\n" not in message


def test_missing_fashion_mnist_names_the_package_and_the_key(tmp_path):
    with pytest.raises(DatasetMissingError) as info:
        build_dataset(DataConfig(name="fashion_mnist", root=str(tmp_path)), "train")
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "--set data.root=" in message and str(tmp_path) in message and "\n" not in message


@pytest.mark.parametrize("payload, problem", [
    (b"\0\0\x08\x01" + (3).to_bytes(4, "big") + bytes(3), "IDX header"),  # labels file where images belong
    (b"\0\0\x08\x03" + b"".join(d.to_bytes(4, "big") for d in (2, 28, 28)) + bytes(10), "header says"),
])
def test_damaged_idx_file_is_reported(tmp_path, payload, problem):
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(payload))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\0\0\x08\x01" + (2).to_bytes(4, "big") + b"\1\2"))
    with pytest.raises(DatasetMissingError, match=problem):
        build_dataset(DataConfig(name="fashion_mnist", root=str(tmp_path)), "test")


def _write_folder(root: Path) -> dict:
    """root/{train,val}/{cat,dog}/*.png with distinct pixels; returns {path: (pixels, label)}."""
    written = {}
    generator = torch.Generator().manual_seed(0)
    for split, per_class in (("train", 3), ("val", 2)):
        for label, name in enumerate(("cat", "dog")):
            (root / split / name).mkdir(parents=True)
            for k in range(per_class):
                channels = 1 if k == 0 else 3  # one greyscale file per class: must come out as RGB
                pixels = torch.randint(0, 256, (channels, 20 + k, 24), dtype=torch.uint8, generator=generator)
                path = root / split / name / f"{k}.png"
                array = pixels.permute(1, 2, 0).squeeze(2).numpy()  # [H, W] or [H, W, 3]
                Image.fromarray(array).save(path)
                written[str(path)] = (pixels.expand(3, -1, -1), label)
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    return written


def test_image_folder_yields_uint8_rgb_and_labels(tmp_path):
    written = _write_folder(tmp_path)
    cfg = DataConfig(name="folder", root=str(tmp_path), num_workers=0)
    train, val = build_dataset(cfg, "train"), build_dataset(cfg, "val")
    assert (len(train), len(val)) == (6, 4) and train.classes == ["cat", "dog"]
    assert build_dataset(cfg, "test").samples == val.samples
    for dataset in (train, val):
        for (path, _), (image, label) in zip(dataset.samples, dataset):
            pixels, expected_label = written[path]
            assert image.dtype == torch.uint8 and torch.equal(image, pixels) and label == expected_label
    subset = build_dataset(DataConfig(name="folder", root=str(tmp_path), train_subset=4), "train")
    assert len(subset) == 4 and subset.targets.tolist() == [train.targets[i] for i in subset.indices]


def test_missing_or_empty_image_folder_is_one_line_error(tmp_path):
    with pytest.raises(DatasetMissingError) as info:
        build_dataset(DataConfig(name="folder", root=str(tmp_path / "nowhere")), "train")
    assert "--set data.root=" in str(info.value) and "\n" not in str(info.value)
    (tmp_path / "train" / "cat").mkdir(parents=True)
    with pytest.raises(DatasetMissingError) as info:
        build_dataset(DataConfig(name="folder", root=str(tmp_path)), "train")
    assert "no class folder" in str(info.value) and "\n" not in str(info.value)


def test_unknown_split_is_refused():
    with pytest.raises(DataError, match="unknown split"):
        build_dataset(fmnist(), "training")


@pytest.fixture
def one_thread():
    """Tiny tensors: intra-op threads only add contention on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SMOKE_AUG = AugmentConfig(global_size=32, local_size=16, n_local=2, eval_resize=32, eval_crop=32)


def _batches(seed: int, workers: int, epoch: int = 0) -> list:
    base = build_dataset(fmnist(test_subset=24), "test")
    dataset = AugmentedDataset(base, MultiCropAugment(SMOKE_AUG), seed)
    dataset.set_epoch(epoch)
    loader = DataLoader(dataset, batch_size=8, num_workers=workers, generator=torch.Generator().manual_seed(0))
    return [(crops, labels) for crops, labels in loader]


def _same(a: list, b: list) -> bool:
    return all(torch.equal(x, y) for (ca, la), (cb, lb) in zip(a, b) for x, y in zip([*ca, la], [*cb, lb]))


def test_augmented_batches_depend_only_on_seed_epoch_and_index(one_thread):
    state = torch.get_rng_state()
    serial = _batches(seed=5, workers=0)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's generator is untouched
    assert len(serial) == 3 and [c.shape for c in serial[0][0]] == [(8, 3, 32, 32)] * 2 + [(8, 3, 16, 16)] * 2
    assert _same(serial, _batches(seed=5, workers=2))
    assert not _same(serial, _batches(seed=6, workers=0))
    assert not _same(serial, _batches(seed=5, workers=0, epoch=1))


def test_augmented_item_does_not_depend_on_call_order(one_thread):
    base = build_dataset(fmnist(test_subset=24), "test")
    first, second = (AugmentedDataset(base, MultiCropAugment(SMOKE_AUG), 9) for _ in range(2))
    forward = [first[i][0] for i in range(6)]
    backward = {i: second[i][0] for i in reversed(range(6))}  # as a run resumed mid-epoch would draw them
    assert all(torch.equal(x, y) for i in range(6) for x, y in zip(forward[i], backward[i]))
    assert not torch.equal(forward[0][2], forward[0][3])  # two locals of one image differ
