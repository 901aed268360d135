"""Batched multi-crop augmentation: per-sample seeding, crop geometry, the pixel ops against torchvision's, the
rates of every random op (2,000 samples), the loader wiring and a resumed pre-training with backend batched."""

import dataclasses

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from jobs.config_io import load_config
from mst.augment import blur_kernel_size
from mst.augment.batched import (
    BatchMultiCrop,
    MultiCropCollate,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    gaussian_blur,
    solarize,
)
from mst.augment.datasets import SeededImageDataset
from mst.config import AugmentConfig, ConfigError
from mst.seeding import sample_seed
from mst.train import Interrupted, run_pretrain
from mst.train.loader import epoch_loader, train_dataset

SMOKE = AugmentConfig(global_size=32, local_size=16, n_local=4, eval_resize=32, eval_crop=32)
# identity normalisation keeps pixel values readable
RAW = dataclasses.replace(SMOKE, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
# only the crop stays random
BARE = dataclasses.replace(RAW, flip_prob=0.0, jitter_prob=0.0, gray_prob=0.0, blur_prob=(0.0,) * 3,
                           solarize_prob=(0.0,) * 3)
DRAWS = 2000
BICUBIC = TF.InterpolationMode.BICUBIC


pytestmark = pytest.mark.usefixtures("one_thread")


def _images(n: int, side: int = 32, seed: int = 0, height: int | None = None) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, height or side, side), dtype=torch.uint8, generator=gen)


def test_shapes_dtype_and_bad_input():
    crops = BatchMultiCrop(SMOKE)(_images(5, height=40, side=36), list(range(5)))
    assert [tuple(c.shape) for c in crops] == [(5, 3, 32, 32)] * 2 + [(5, 3, 16, 16)] * 4
    assert all(c.dtype == torch.float32 for c in crops)
    assert len(BatchMultiCrop(dataclasses.replace(SMOKE, n_local=0))(_images(2), [0, 1])) == 2
    with pytest.raises(ValueError, match="uint8"):
        BatchMultiCrop(SMOKE)(_images(2).float(), [0, 1])
    with pytest.raises(ValueError, match="seeds"):
        BatchMultiCrop(SMOKE)(_images(2), [0])


def test_backend_field_is_validated():
    assert AugmentConfig().backend == "v2"
    with pytest.raises(ConfigError, match="augment.backend"):
        AugmentConfig(backend="gpu")


def test_a_sample_gets_the_same_crops_in_any_batch_and_the_global_rng_is_untouched():
    augment = BatchMultiCrop(SMOKE)
    images = _images(9, seed=1)
    seeds = [sample_seed(7, 0, i) for i in range(9)]
    rng = torch.get_rng_state()
    alone, params_alone = augment(images[4:5], seeds[4:5], return_params=True)
    batch, params_batch = augment(images, seeds, return_params=True)
    shuffled = augment(images[[8, 2, 4]], [seeds[8], seeds[2], seeds[4]])
    assert torch.equal(torch.get_rng_state(), rng)
    for a, b, c in zip(alone, batch, shuffled):
        torch.testing.assert_close(a[0], b[4], atol=1e-5, rtol=0)
        torch.testing.assert_close(a[0], c[2], atol=1e-5, rtol=0)
    for key, value in params_alone.items():
        assert torch.equal(value[0], params_batch[key][4]), key
    assert not torch.allclose(batch[0][0], batch[0][1])  # another seed, other crops
    assert not torch.allclose(batch[0][4], batch[1][4])  # the two global views of a sample differ


def test_images_of_different_sizes_are_augmented_like_their_own_batches():
    augment = BatchMultiCrop(SMOKE)
    small, large = _images(2, side=32, seed=2), _images(1, side=40, seed=3)
    mixed = augment([small[0], large[0], small[1]], [10, 11, 12])
    alone_small, alone_large = augment(small, [10, 12]), augment(large, [11])
    for m, s, la in zip(mixed, alone_small, alone_large):
        torch.testing.assert_close(m[[0, 2]], s, atol=1e-5, rtol=0)
        torch.testing.assert_close(m[1:2], la, atol=1e-5, rtol=0)


def test_scale_one_reproduces_the_resized_image_and_flip_flips():
    cfg = dataclasses.replace(BARE, global_scale=(1.0, 1.0), local_scale=(1.0, 1.0))
    images = _images(6, seed=4)
    crops = BatchMultiCrop(cfg)(images, list(range(6)))
    x = images.float() / 255
    resized = TF.resize(x, [16, 16], interpolation=BICUBIC, antialias=True).clamp(0, 1)
    for view in crops[:2]:
        torch.testing.assert_close(view, x, atol=1e-5, rtol=0)
    for view in crops[2:]:
        torch.testing.assert_close(view, resized, atol=1e-5, rtol=0)
    flipped = BatchMultiCrop(dataclasses.replace(cfg, flip_prob=1.0))(images, list(range(6)))
    for a, b in zip(crops, flipped):
        torch.testing.assert_close(b, a.flip(-1), atol=1e-5, rtol=0)
    # a wide image: no try fits at scale 1, so torchvision's fallback, the centre crop at ratio 4/3
    wide = _images(2, height=24, side=40, seed=5)
    out = BatchMultiCrop(cfg)(wide, [0, 1])[0]
    expected = TF.resized_crop(wide.float() / 255, 0, 4, 24, 32, [32, 32], interpolation=BICUBIC,
                               antialias=True).clamp(0, 1)  # bicubic overshoots; crops are clamped as uint8 ones
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_crops_are_torchvisions_resized_crops_of_their_boxes():
    images = _images(DRAWS, height=28, side=36, seed=6)
    crops, params = BatchMultiCrop(BARE)(images, list(range(DRAWS)), return_params=True)
    box = params["box"]                                                       # [B, V, 4] top, left, h, w
    top, left, h, w = box.unbind(-1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 28).all() and (left + w <= 36).all()
    area, ratio = h * w / (28 * 36), w / h
    for views, (lo, hi) in ((slice(0, 2), BARE.global_scale), (slice(2, None), BARE.local_scale)):
        # whole pixels: the area and ratio drawn are rounded, so allow one pixel's worth
        assert area[:, views].min() >= lo - 0.05 and area[:, views].max() <= hi + 0.05
        assert area[:, views].std() > 0.05  # spread over the range, not one fixed size
    assert ratio.min() >= 3 / 4 - 0.1 and ratio.max() <= 4 / 3 + 0.15
    x = images.float() / 255
    for i in range(0, DRAWS, 400):
        for view, crop in enumerate(crops):
            t, lf, hh, ww = (int(v) for v in box[i, view])
            ref = TF.resized_crop(x[i], t, lf, hh, ww, list(crop.shape[-2:]), interpolation=BICUBIC,
                                  antialias=True).clamp(0, 1)
            torch.testing.assert_close(crop[i], ref, atol=1e-5, rtol=0)


def test_pixel_ops_match_torchvisions_per_image():
    gen = torch.Generator().manual_seed(7)
    x = torch.rand(6, 3, 16, 16, generator=gen)
    x[0] = 0.5                     # grey: no hue
    x[1, 1] = x[1, 0]              # red and green tie for the maximum
    flat = x.flatten(2)
    factors = 0.5 + torch.rand(6, generator=gen)
    shifts = torch.rand(6, generator=gen) - 0.5
    for ours, theirs, f in ((adjust_brightness, TF.adjust_brightness, factors),
                            (adjust_contrast, TF.adjust_contrast, factors),
                            (adjust_saturation, TF.adjust_saturation, factors),
                            (adjust_hue, TF.adjust_hue, shifts)):
        expected = torch.stack([theirs(x[i], float(f[i])) for i in range(6)])
        torch.testing.assert_close(ours(flat, f).view_as(x), expected, atol=2e-6, rtol=0)
    sigmas = 0.1 + 1.9 * torch.rand(6, generator=gen)
    for side, kernel in ((16, blur_kernel_size(16)), (16, 7)):
        expected = torch.stack([TF.gaussian_blur(x[i], [kernel, kernel], [float(sigmas[i])] * 2) for i in range(6)])
        torch.testing.assert_close(gaussian_blur(flat, sigmas, kernel, side).view_as(x), expected, atol=1e-6, rtol=0)
    as_uint8 = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 256)
    expected = TF.solarize(as_uint8, 128).float() / 255
    torch.testing.assert_close(solarize(as_uint8.float() / 255, 128), expected, atol=1e-6, rtol=0)


def test_blur_and_solarisation_rates_per_view_kind_and_the_pixels_agree():
    cfg = dataclasses.replace(RAW, n_local=1, jitter_prob=0.0, gray_prob=0.0)
    # a constant 200 image stays 200 through crop and blur; solarisation makes it 255 - 200 = 55
    image = torch.full((DRAWS, 3, 32, 32), 200, dtype=torch.uint8)
    crops, params = BatchMultiCrop(cfg)(image, list(range(DRAWS)), return_params=True)
    blur, solarised = params["blur"].double().mean(0), params["solarize"]
    assert blur[0] == 1.0
    assert blur[1].item() == pytest.approx(0.1, abs=0.03) and blur[2].item() == pytest.approx(0.5, abs=0.03)
    assert not solarised[:, 0].any() and not solarised[:, 2].any()
    assert solarised[:, 1].double().mean().item() == pytest.approx(0.2, abs=0.03)
    for view, crop in enumerate(crops):
        value = torch.round(crop * 255)                                         # [B, 3, S, S]
        expected = torch.where(solarised[:, view], 55.0, 200.0)[:, None, None, None].expand_as(value)
        assert torch.equal(value, expected)


def test_blur_applies_the_recorded_sigma():
    seeds, images = list(range(50)), _images(50, seed=8)
    plain = BatchMultiCrop(BARE)(images, seeds)
    blurred, params = BatchMultiCrop(dataclasses.replace(BARE, blur_prob=(1.0, 1.0, 1.0)))(
        images, seeds, return_params=True)
    assert params["blur"].all()
    for view, (a, b) in enumerate(zip(plain, blurred)):
        side = a.shape[-1]
        kernel = blur_kernel_size(side)
        expected = torch.stack([TF.gaussian_blur(a[i], [kernel, kernel], [float(params["sigma"][i, view])] * 2)
                                for i in range(50)])
        torch.testing.assert_close(b, expected, atol=1e-5, rtol=0)


def test_jitter_and_grayscale_rates_and_what_they_do():
    cfg = dataclasses.replace(RAW, blur_prob=(0.0,) * 3, solarize_prob=(0.0,) * 3)
    seeds = list(range(DRAWS))
    images = _images(DRAWS, seed=9)
    crops, params = BatchMultiCrop(cfg)(images, seeds, return_params=True)
    assert params["jitter"].double().mean().item() == pytest.approx(0.8, abs=0.03)
    assert params["gray"].double().mean().item() == pytest.approx(0.2, abs=0.03)
    assert params["flip"].double().mean().item() == pytest.approx(0.5, abs=0.03)
    order = params["order"]
    assert torch.equal(order.sort(-1).values, torch.arange(4).expand_as(order))  # a permutation per view
    for op in range(4):                                          # each op comes first a quarter of the time
        assert (order[..., 0] == op).double().mean().item() == pytest.approx(0.25, abs=0.03)
    factors, (lo, hi) = params["factors"], (torch.tensor([0.6, 0.6, 0.8, -0.1]), torch.tensor([1.4, 1.4, 1.2, 0.1]))
    assert (factors >= lo).all() and (factors <= hi).all()
    # exact: grey crops have equal channels; jittered crops are torchvision's ops, in the recorded order,
    # applied to the crop without jitter (same seeds: same boxes)
    plain = BatchMultiCrop(dataclasses.replace(cfg, jitter_prob=0.0, gray_prob=0.0))(images, seeds)
    ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    for view, crop in enumerate(crops):
        grey = (crop[:, 0] == crop[:, 1]).flatten(1).all(1) & (crop[:, 1] == crop[:, 2]).flatten(1).all(1)
        assert torch.equal(grey, params["gray"][:, view])
        for i in range(0, DRAWS, 97):
            expected = plain[view][i]
            if params["jitter"][i, view]:
                for op in order[i, view].tolist():
                    expected = ops[op](expected, float(factors[i, view, op]))
            if params["gray"][i, view]:
                expected = TF.rgb_to_grayscale(expected, num_output_channels=3)
            torch.testing.assert_close(crop[i], expected, atol=2e-5, rtol=0)


def test_normalisation_uses_the_configured_mean_and_std():
    images, seeds = _images(3, seed=10), [1, 2, 3]
    raw = BatchMultiCrop(RAW)(images, seeds)
    normalised = BatchMultiCrop(SMOKE)(images, seeds)
    mean, std = torch.tensor(SMOKE.mean)[:, None, None], torch.tensor(SMOKE.std)[:, None, None]
    for a, b in zip(raw, normalised):
        torch.testing.assert_close(b, (a - mean) / std, atol=1e-5, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gives_the_cpu_crops():
    images, seeds = _images(16, seed=11), list(range(16))
    cpu = BatchMultiCrop(SMOKE)(images, seeds)
    gpu = BatchMultiCrop(SMOKE)(images.cuda(), seeds)
    for a, b in zip(cpu, gpu):
        assert b.device.type == "cuda"
        torch.testing.assert_close(b.cpu(), a, atol=1e-4, rtol=0)


# --- wiring: loader and pre-training --------------------------------------------------------------------------

TINY = ["augment.backend=batched", "data.train_subset=64", "train.batch_size=16", "train.epochs=2",
        "train.checkpoint_every=3"]


def test_loader_yields_crops_and_labels_independent_of_workers():
    cfg = load_config("tiny", TINY)
    dataset = train_dataset(cfg)
    assert isinstance(dataset, SeededImageDataset)
    image, _, seed = dataset[3]
    assert image.dtype == torch.uint8 and seed == sample_seed(cfg.train.seed, 0, 3)
    batches = {}
    for workers in (0, 1):
        wcfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, num_workers=workers))
        batches[workers] = list(epoch_loader(dataset, wcfg, 1, 1, 1, 0, torch.device("cpu")))
    crops, labels = batches[0][0]
    assert [tuple(c.shape) for c in crops] == [(16, 3, 32, 32)] * 2 + [(16, 3, 16, 16)] * cfg.augment.n_local
    assert labels.dtype == torch.int64 and labels.shape == (16,)
    assert len(batches[0]) == len(batches[1]) == 64 // 16 - 1      # started at batch 1
    for (c0, l0), (c1, l1) in zip(batches[0], batches[1]):
        assert torch.equal(l0, l1)
        for a, b in zip(c0, c1):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    # the collate alone gives the same crops for the same items
    items = [dataset[i] for i in range(4)]
    again = MultiCropCollate(cfg.augment)(items)[0]
    for crop, single in zip(again, BatchMultiCrop(cfg.augment)(torch.stack([it[0] for it in items]),
                                                                 [it[2] for it in items])):
        torch.testing.assert_close(crop, single, atol=1e-5, rtol=0)


def test_pretrain_stopped_and_resumed_matches_an_uninterrupted_run(tmp_path):
    cfg = load_config("tiny", TINY)
    full = run_pretrain(cfg, tmp_path / "full", show_progress=False)
    assert full["status"] == "done" and full["metrics"]["steps"] == 8
    calls = {"n": 0}

    def stop_after_five():
        calls["n"] += 1
        return calls["n"] > 5            # polled before each step: stops after step 5 (mid-epoch 2)
    with pytest.raises(Interrupted):
        run_pretrain(cfg, tmp_path / "resumed", should_stop=stop_after_five, show_progress=False)
    resumed = run_pretrain(cfg, tmp_path / "resumed", show_progress=False)
    assert resumed["weights_sha256"] == full["weights_sha256"]
