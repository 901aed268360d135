"""mst/compat.py: the same behaviour on torch 2.1 / torchvision 0.16 and on today's versions (CI runs this file
on both), and no version-dependent call outside it."""

from __future__ import annotations

import pickle
import re
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torchvision.transforms import v2

from mst import compat

ROOT = Path(__file__).resolve().parent.parent


class NotATensor:
    """A class a weights-only load must refuse to build."""


@pytest.mark.parametrize(("text", "parsed"), [
    ("2.1.2+cu121", (2, 1, 2)), ("2.14.1", (2, 14, 1)), ("2.6.0a0+git1234", (2, 6, 0)), ("0.16.0", (0, 16, 0)),
    ("2.1.0+das1.0.git7d9b1f3.abi0.dtk2310", (2, 1, 0)), ("2.5", (2, 5)),
])
def test_version_tuple(text, parsed):
    assert compat.version_tuple(text) == parsed


def test_running_versions_are_at_or_above_the_floor():
    import torchvision

    assert compat.TORCH_VERSION[:2] >= compat.TORCH_FLOOR
    assert compat.version_tuple(torchvision.__version__)[:2] >= compat.TORCHVISION_FLOOR


def test_a_disabled_scaler_passes_through_and_saves_an_empty_state():
    scaler = compat.grad_scaler("cpu", enabled=False)
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([w], lr=0.5)
    loss = (2 * w).sum()
    assert scaler.scale(loss) is loss
    loss.backward()
    scaler.unscale_(opt)
    scaler.step(opt)
    scaler.update()
    assert torch.equal(w.detach(), torch.zeros(3))
    assert scaler.state_dict() == {} and not scaler.is_enabled()
    compat.grad_scaler("cpu", enabled=False).load_state_dict(scaler.state_dict())


def test_autocast_fp32_is_no_context_and_bf16_casts_matmuls():
    a = torch.randn(4, 4)
    with compat.autocast("fp32", "cpu"):
        assert (a @ a).dtype == torch.float32
    with compat.autocast("bf16", "cpu"):
        assert (a @ a).dtype == torch.bfloat16


def test_attention_matches_softmax_and_the_math_kernel():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8, generator=gen) for _ in range(3))   # [B, H, N, d]
    expected = ((q @ k.transpose(-2, -1)) / 8 ** 0.5).softmax(-1) @ v
    torch.testing.assert_close(compat.attention(q, k, v), expected, atol=1e-5, rtol=1e-5)
    with compat.math_attention():
        torch.testing.assert_close(compat.attention(q, k, v), expected, atol=1e-5, rtol=1e-5)


def test_v2_hooks_draw_and_apply_as_the_transform_does():
    image = torch.randint(0, 256, (3, 20, 24), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    crop = v2.RandomResizedCrop(8, antialias=True)
    torch.manual_seed(5)
    params = compat.v2_make_params(crop, [image])
    by_hooks = compat.v2_apply(crop, image, params)
    torch.manual_seed(5)
    assert torch.equal(by_hooks, crop(image))
    solarize = v2.RandomSolarize(128, p=1.0)
    assert hasattr(solarize, compat.V2_TRANSFORM_METHOD)
    assert torch.equal(compat.v2_apply(solarize, image, {}), 255 - image + (image < 128) * (2 * image - 255))


def test_load_weights_only_builds_tensors_and_plain_values_and_nothing_else(tmp_path):
    state = {"w": torch.arange(4.0), "step": 3, "name": "x", "nested": [1.5, None, (2, 3)],
             "od": OrderedDict(a=torch.ones(1)), "size": torch.Size([2, 3]), "dtype": torch.float16}
    torch.save(state, tmp_path / "ok.pt")
    loaded = compat.load_weights_only(tmp_path / "ok.pt")
    assert torch.equal(loaded["w"], state["w"]) and loaded["nested"] == [1.5, None, (2, 3)]
    assert loaded["size"] == torch.Size([2, 3]) and loaded["dtype"] is torch.float16
    torch.save({"evil": NotATensor()}, tmp_path / "bad.pt")
    with pytest.raises(pickle.UnpicklingError):
        compat.load_weights_only(tmp_path / "bad.pt")


def test_count_flops_counts_a_linear_layer():
    layer = torch.nn.Linear(16, 8)
    x = torch.randn(4, 16)                                            # [4, 16] @ [16, 8]
    out, flops = compat.count_flops(layer, x)
    assert out.shape == (4, 8) and flops == 2 * 4 * 16 * 8


def test_no_version_dependent_call_outside_compat():
    # the preflight compares versions with the supported ranges (jobs/preflight.py): that reports, it does
    # not branch on them, so version_tuple itself is not looked for
    pattern = re.compile(r"GradScaler|torch\.cuda\.amp|sdp_kernel|sdpa_kernel|(torch|torchvision)\.__version__\s*[<>=!]|"
                         r"TORCH_VERSION\b|\._transform\(|\._get_params\(|\.make_params\(")
    offenders = []
    for folder in ("mst", "jobs", "analysis", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name == "compat.py":
                continue
            offenders += [f"{path.relative_to(ROOT)}:{n}" for n, line in enumerate(path.read_text().splitlines(), 1)
                          if pattern.search(line)]
    assert offenders == []
