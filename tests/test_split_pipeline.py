"""The split pipeline (augment.backend=split): worker-side decode, crop and flip to uint8; photometric ops batched
in the step. Same draws as the batched backend for the same seed, rates and ranges of every random op, the
same distribution as the v2 pipeline, reduced-size JPEG decode, unreadable files, loader wiring and resume."""

import dataclasses
import logging

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats

from jobs.config_io import load_config
from mst.augment import MultiCropAugment
from mst.augment.batched import BatchMultiCrop, draw_uniforms
from mst.augment.datasets import CroppedDataset
from mst.augment.split import BatchPhotometric, CropCollate, geometric_crops
from mst.config import AugmentConfig
from mst.data.folder import ImageFolderDataset
from mst.seeding import sample_seed
from mst.train import Interrupted, run_pretrain
from mst.train.loader import ResumableSampler, RunLoader, epoch_loader, train_dataset

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = AugmentConfig(global_size=32, local_size=16, n_local=4, eval_resize=32, eval_crop=32, backend="split")
RAW = dataclasses.replace(SMALL, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def _smooth_images(n: int, height: int = 48, width: int = 40, seed: int = 0) -> torch.Tensor:
    """uint8 [n, 3, H, W] colour images with structure at several scales (noise upsampled)."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, height // 8, width // 8, generator=gen)
    fine = torch.rand(n, 3, height, width, generator=gen)
    up = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    return ((0.8 * up + 0.2 * fine) * 255).round().to(torch.uint8)


def _split(images: torch.Tensor, seeds: list[int], cfg=SMALL, return_params=False):
    gen = torch.Generator()
    crops = [geometric_crops(image, draw_uniforms(gen, [s], 2 + cfg.n_local)[0], cfg)
             for image, s in zip(images, seeds)]
    stacked = [torch.stack(views) for views in zip(*crops)]
    return BatchPhotometric(cfg)(stacked, seeds, return_params=return_params)


def test_same_draws_and_nearly_the_same_pixels_as_the_batched_backend():
    images, seeds = _smooth_images(24), [sample_seed(3, 0, i) for i in range(24)]
    split, split_params = _split(images, seeds, return_params=True)
    batched, batched_params = BatchMultiCrop(SMALL)(images, seeds, return_params=True)
    for key, value in split_params.items():
        assert torch.equal(value, batched_params[key]), key
    for a, b in zip(split, batched):
        assert a.shape == b.shape and a.dtype == torch.float32
        # PIL's bicubic rounds to uint8 between its passes; the ops downstream amplify that by a few
        diff = (a - b).abs()
        assert diff.mean() < 0.02, float(diff.mean())
        assert diff.quantile(0.99) < 0.1, float(diff.quantile(0.99))


def test_worker_crops_are_uint8_and_flip_at_its_rate():
    cfg = dataclasses.replace(RAW, global_scale=(1.0, 1.0), local_scale=(1.0, 1.0))
    image = _smooth_images(1, 32, 32)[0]
    gen = torch.Generator()
    flips = 0
    for seed in range(400):
        u = draw_uniforms(gen, [seed], 6)[0]
        crops = geometric_crops(image, u, cfg)
        assert [tuple(c.shape) for c in crops] == [(3, 32, 32)] * 2 + [(3, 16, 16)] * 4
        assert all(c.dtype == torch.uint8 for c in crops)
        # scale 1 at the image's own size: the crop is the image or its mirror
        flipped = not torch.equal(crops[0], image)
        assert torch.equal(crops[0], image.flip(-1) if flipped else image)
        flips += flipped
    assert abs(flips / 400 - cfg.flip_prob) < 0.08


def test_photometric_rates_and_ranges_per_view_kind():
    n = 2000
    crops = [torch.randint(0, 256, (n, 3, 4, 4), dtype=torch.uint8) for _ in range(2)] + \
            [torch.randint(0, 256, (n, 3, 2, 2), dtype=torch.uint8) for _ in range(2)]
    cfg = dataclasses.replace(RAW, global_size=4, local_size=2, n_local=2, eval_resize=4, eval_crop=4)
    _, p = BatchPhotometric(cfg)(crops, list(range(n)), return_params=True)        # each [n, V, ...]
    tol = 4 * (0.25 / n) ** 0.5                                                   # 4 standard errors at most

    def rate(key, view):
        return float(p[key][:, view].double().mean())
    for view in range(4):
        assert abs(rate("jitter", view) - cfg.jitter_prob) < tol
        assert abs(rate("gray", view) - cfg.gray_prob) < tol
        kind = min(view, 2)
        assert abs(rate("blur", view) - cfg.blur_prob[kind]) < tol
        assert abs(rate("solarize", view) - cfg.solarize_prob[kind]) < tol
    factors, sigma = p["factors"], p["sigma"]
    for i, j in enumerate(cfg.jitter[:3]):
        assert factors[..., i].min() >= 1 - j and factors[..., i].max() <= 1 + j
    assert factors[..., 3].abs().max() <= cfg.jitter[3]
    assert sigma.min() >= cfg.blur_sigma[0] and sigma.max() <= cfg.blur_sigma[1]
    assert (p["order"].sort(-1).values == torch.arange(4)).all()                 # a permutation per view


def test_split_pipeline_has_the_v2_pipelines_distribution():
    """Per-crop mean and spread of the pixels, split (worker + step) against the v2 pipeline over the same
    image: two-sample Kolmogorov-Smirnov tests per view kind."""
    image = _smooth_images(1, 48, 40, seed=5)[0]
    n = 300
    split = _split(image.expand(n, -1, -1, -1), [sample_seed(1, 0, i) for i in range(n)])
    v2 = MultiCropAugment(dataclasses.replace(SMALL, backend="v2"))
    torch.manual_seed(0)
    reference = [torch.stack(views) for views in zip(*(v2(image) for _ in range(n)))]
    for kind in (slice(0, 1), slice(1, 2), slice(2, None)):
        for stat in (lambda t: t.mean(dim=(1, 2, 3)), lambda t: t.std(dim=(1, 2, 3))):
            a = torch.cat([stat(t) for t in split[kind]]).numpy()
            b = torch.cat([stat(t) for t in reference[kind]]).numpy()
            assert stats.ks_2samp(a, b).pvalue > 1e-3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA (or ROCm) device")
def test_device_photometric_equals_the_cpu_one():
    images, seeds = _smooth_images(16, seed=7), list(range(16))
    gen = torch.Generator()
    crops = [geometric_crops(im, draw_uniforms(gen, [s], 6)[0], SMALL) for im, s in zip(images, seeds)]
    stacked = [torch.stack(views) for views in zip(*crops)]
    cpu = BatchPhotometric(SMALL)(stacked, seeds)
    gpu = BatchPhotometric(SMALL)([t.cuda() for t in stacked], seeds)
    for a, b in zip(cpu, gpu):
        assert b.device.type == "cuda"
        torch.testing.assert_close(b.cpu(), a, atol=1e-4, rtol=0)


# --- folders of JPEGs -----------------------------------------------------------------------------------------

def _jpeg_folder(root, per_class=4, size=(200, 150), classes=("a", "b")):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                coarse = rng.integers(0, 256, (size[1] // 10, size[0] // 10, 3), dtype=np.uint8)
                Image.fromarray(coarse).resize(size, Image.Resampling.BILINEAR).save(folder / f"{i}.jpg", quality=90)
    return root


def test_jpeg_is_decoded_at_reduced_size_when_every_crop_allows(tmp_path, monkeypatch):
    root = _jpeg_folder(tmp_path, per_class=1, size=(640, 480), classes=("a",))
    path = str(root / "train" / "a" / "0.jpg")
    sizes = []
    original = Image.Image.convert

    def spy(self, *args, **kwargs):
        sizes.append(self.size)
        return original(self, *args, **kwargs)
    monkeypatch.setattr(Image.Image, "convert", spy)
    cfg = dataclasses.replace(RAW, global_scale=(0.6, 1.0), local_scale=(0.3, 0.5), flip_prob=0.0)
    u = draw_uniforms(torch.Generator(), [0], 6)[0]
    reduced = geometric_crops(path, u, cfg)
    assert sizes[-1][0] < 640 and sizes[-1][0] >= 640 / 8      # a draft scale was used
    full = geometric_crops(torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1), u, cfg)
    for a, b in zip(reduced, full):                               # the same crops, within JPEG's DCT scaling
        assert (a.float() - b.float()).abs().mean() < 6
    # a crop that needs every source pixel: no reduction
    sizes.clear()
    geometric_crops(path, u, dataclasses.replace(cfg, global_size=480, local_size=16, eval_resize=480,
                                                 eval_crop=480))
    assert sizes[-1] == (640, 480)


def test_unreadable_jpeg_is_skipped_with_one_line_and_counted(tmp_path, caplog):
    root = _jpeg_folder(tmp_path, per_class=8)
    bad = root / "train" / "b" / "3.jpg"
    bad.write_bytes(bad.read_bytes()[:300])                       # truncated at hour 30
    cfg = load_config("tiny", [f"data.root={root}", "data.name=folder", "augment.backend=split",
                               "data.train_subset=0", "data.test_subset=0", "train.batch_size=8",
                               "train.epochs=1", "data.num_workers=0"])
    dataset = train_dataset(cfg)
    index = [p for p, _ in dataset.base.samples].index(str(bad))
    with caplog.at_level(logging.WARNING):
        assert dataset[index] is None
    lines = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(lines) == 1 and str(bad) in lines[0] and "\n" not in lines[0]
    crops, labels, seeds, skipped = CropCollate()([dataset[0], dataset[index], dataset[1]])
    assert int(skipped) == 1 and len(labels) == 2 and crops[0].shape[0] == 2
    assert seeds.tolist() == [dataset[0][2], dataset[1][2]]
    record = run_pretrain(cfg, tmp_path / "run", show_progress=False)
    assert record["status"] == "done" and record["metrics"]["skipped_images"] == 1


def test_folder_dataset_items_and_sources(tmp_path):
    root = _jpeg_folder(tmp_path)
    dataset = CroppedDataset(ImageFolderDataset(root, "train"), SMALL, seed=5)
    crops, label, seed = dataset[2]
    assert seed == sample_seed(5, 0, 2) and label == 0
    assert [tuple(c.shape) for c in crops] == [(3, 32, 32)] * 2 + [(3, 16, 16)] * 4
    again, _, _ = dataset[(0, 2)]                                   # (epoch, index): what persistent workers get
    assert all(torch.equal(a, b) for a, b in zip(crops, again))
    dataset.set_epoch(1)
    assert dataset[2][2] == sample_seed(5, 1, 2)


# --- wiring -----------------------------------------------------------------------------------------------------

TINY = ["augment.backend=split", "data.train_subset=64", "train.batch_size=16", "train.epochs=2",
        "train.checkpoint_every=3"]


def test_loader_batches_do_not_depend_on_the_worker_count_and_workers_persist():
    cfg = load_config("tiny", TINY)
    dataset = train_dataset(cfg)
    assert isinstance(dataset, CroppedDataset)
    batches = {}
    for workers in (0, 1):
        wcfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, num_workers=workers))
        run = RunLoader(dataset, wcfg, 1, 0, torch.device("cpu"))
        batches[workers] = []
        for epoch, start in ((0, 1), (1, 0)):       # a resumed run's first epoch starts mid-way
            loader = run.epoch(epoch, start)
            batches[workers] += list(loader)
            if workers:
                assert loader.persistent_workers and run.epoch(epoch + 1, 0) is loader
    fresh = list(epoch_loader(dataset, cfg, 1, 0, 1, 0, torch.device("cpu")))
    assert len(batches[0]) == len(batches[1]) == 2 * (64 // 16) - 1
    for (c0, l0, s0, k0), (c1, l1, s1, k1) in zip(batches[0] + fresh, batches[1] + batches[1][3:]):
        assert torch.equal(l0, l1) and torch.equal(s0, s1) and int(k0) == int(k1) == 0
        assert all(a.dtype == torch.uint8 and torch.equal(a, b) for a, b in zip(c0, c1))
    # the persistent workers served epoch 1's seeds, in epoch 1's order
    order = ResumableSampler(dataset, 1, 0, cfg.train.seed)
    order.set_epoch(1)
    expected = [sample_seed(cfg.train.seed, 1, i) for i in list(order)[:16]]
    assert batches[1][3][2].tolist() == expected


@pytest.mark.parametrize("workers", [0, 1])
def test_pretrain_stopped_and_resumed_matches_an_uninterrupted_run(tmp_path, workers):
    cfg = load_config("tiny", [*TINY, f"data.num_workers={workers}"])
    full = run_pretrain(cfg, tmp_path / "full", show_progress=False)
    assert full["status"] == "done" and full["metrics"]["steps"] == 8
    calls = {"n": 0}

    def stop_after_five():
        calls["n"] += 1
        return calls["n"] > 5
    with pytest.raises(Interrupted):
        run_pretrain(cfg, tmp_path / "resumed", should_stop=stop_after_five, show_progress=False)
    resumed = run_pretrain(cfg, tmp_path / "resumed", show_progress=False)
    assert resumed["weights_sha256"] == full["weights_sha256"]
