"""Multi-crop augmentation: crop counts and sizes, per-view blur/solarisation rates, evaluation transforms."""

import dataclasses

import pytest
import torch
from torchvision.transforms import v2

from mst.augment import MultiCropAugment, blur_kernel_size, eval_transform, probe_train_transform
from mst.compat import V2_TRANSFORM_METHOD
from mst.config import AugmentConfig

SMOKE = AugmentConfig(global_size=32, local_size=16, n_local=6, eval_resize=32, eval_crop=32)
# only crops, blur and solarisation stay random; identity normalisation keeps pixel values readable
PLAIN = dataclasses.replace(SMOKE, n_local=1, flip_prob=0.0, jitter_prob=0.0, gray_prob=0.0,
                            mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
DRAWS = 2000


pytestmark = pytest.mark.usefixtures("one_thread")


def _find(transform, kind) -> list:
    """Every transform of type `kind` inside a (nested) v2 pipeline."""
    found = [transform] if isinstance(transform, kind) else []
    for inner in getattr(transform, "transforms", []):
        found += _find(inner, kind)
    return found


def _count_calls(module, method: str) -> list:
    """Make `module.<method>` record each call (the real method still runs); returns the call log."""
    calls, original = [], getattr(module, method)

    def recorded(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    setattr(module, method, recorded)
    return calls


def test_crop_counts_sizes_and_dtype():
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, 40, 36), dtype=torch.uint8)
    crops = MultiCropAugment(SMOKE)(image)
    assert [tuple(c.shape) for c in crops] == [(3, 32, 32)] * 2 + [(3, 16, 16)] * 6
    assert all(type(c) is torch.Tensor and c.dtype == torch.float32 for c in crops)
    paper = MultiCropAugment(AugmentConfig())(torch.randint(0, 256, (3, 256, 300), dtype=torch.uint8))
    assert [tuple(c.shape) for c in paper] == [(3, 224, 224)] * 2 + [(3, 96, 96)] * 8
    assert MultiCropAugment(dataclasses.replace(SMOKE, n_local=0))(image).__len__() == 2


def test_blur_kernel_is_odd_and_about_a_tenth_of_the_crop():
    assert blur_kernel_size(224) == 23  # BYOL's kernel at 224 px
    for size in (16, 32, 64, 96, 160, 224):
        k = blur_kernel_size(size)
        assert k % 2 == 1 and k >= 3 and abs(k - 0.1 * size) <= 1.5


def test_blur_and_solarisation_rates_per_view_kind():
    augment = MultiCropAugment(PLAIN)
    views = (*augment.global_views, augment.local_view)  # global 1, global 2, locals
    blurs = [_find(view, v2.GaussianBlur) for view in views]
    solarizers = [_find(view, v2.RandomSolarize) for view in views]
    assert [len(b) for b in blurs] == [1, 1, 1] and [len(s) for s in solarizers] == [0, 1, 0]
    blur_calls = [_count_calls(b[0], "forward") for b in blurs]
    solarize_calls = _count_calls(solarizers[1][0], V2_TRANSFORM_METHOD)
    # A constant 200 image stays 200 through crops and blur; solarisation turns it into 255 - 200 = 55, so
    # the pixels show solarisation exactly. Blur is invisible at small sigma: it is counted at the call.
    image = torch.full((3, 32, 32), 200, dtype=torch.uint8)
    solarised = [0, 0, 0]
    torch.manual_seed(1)
    for _ in range(DRAWS):
        for view, crop in enumerate(augment(image)):
            value = torch.round(crop * 255)
            assert value.unique().tolist() in ([200.0], [55.0])
            solarised[view] += int(value[0, 0, 0] == 55)
    blur_rates = [len(calls) / DRAWS for calls in blur_calls]
    assert blur_rates[0] == 1.0
    assert blur_rates[1] == pytest.approx(0.1, abs=0.03)
    assert blur_rates[2] == pytest.approx(0.5, abs=0.03)
    assert solarised[0] == 0 and solarised[2] == 0
    assert solarised[1] / DRAWS == pytest.approx(0.2, abs=0.03)
    assert len(solarize_calls) == solarised[1]  # the instrumented count and the pixels agree exactly


def test_same_seed_same_crops_and_views_differ():
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    augment = MultiCropAugment(SMOKE)
    torch.manual_seed(4)
    first = augment(image)
    torch.manual_seed(4)
    assert all(torch.equal(a, b) for a, b in zip(first, augment(image)))
    assert not torch.equal(first[0], first[1]) and not torch.equal(first[2], first[3])


def test_eval_transform_resizes_crops_and_normalises():
    cfg = dataclasses.replace(SMOKE, eval_resize=36, eval_crop=32)
    image = torch.full((3, 50, 40), 128, dtype=torch.uint8)
    out = eval_transform(cfg)(image)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    expected = (128 / 255 - torch.tensor(cfg.mean)) / torch.tensor(cfg.std)
    assert torch.allclose(out, expected[:, None, None].expand(3, 32, 32), atol=1e-5)
    # deterministic: the centre crop of the resized image, no randomness involved
    ramp = torch.arange(50 * 40, dtype=torch.float32).reshape(1, 50, 40).expand(3, -1, -1).div(8).to(torch.uint8)
    torch.manual_seed(0)
    first = eval_transform(cfg)(ramp)
    torch.manual_seed(1)
    assert torch.equal(first, eval_transform(cfg)(ramp))


def test_probe_train_transform_is_random_crop_and_flip():
    image = torch.randint(0, 256, (3, 48, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    transform = probe_train_transform(SMOKE)
    kinds = [type(t) for t in transform.transforms]
    assert v2.RandomResizedCrop in kinds and v2.RandomHorizontalFlip in kinds and v2.ColorJitter not in kinds
    torch.manual_seed(6)
    a, b = transform(image), transform(image)
    assert a.shape == (3, 32, 32) and not torch.equal(a, b)
