"""Everything that differs between the oldest supported PyTorch (2.1 / torchvision 0.16) and today's.

The clusters run their own builds: DCU sites a vendor DTK torch of the 2.1 class, V100 sites a CUDA 12.6
wheel, this machine the locked one. Code elsewhere calls these helpers and never looks at a version itself.

Differences covered:
- loss scaling: `torch.amp.GradScaler(device)` arrived in 2.3; 2.1 has `torch.cuda.amp.GradScaler` only;
- autocast: one context for the three precisions (fp32 means none);
- attention: the kernel-choice context moved from `torch.backends.cuda.sdp_kernel` (2.1) to
  `torch.nn.attention.sdpa_kernel` (2.3+);
- torchvision v2: a transform's per-call hooks are `make_params` / `transform` from 0.21 on and
  `_get_params` / `_transform` before;
- torch.load: `weights_only` exists on both, but its default flipped to True in 2.6, and the allow-list of
  extra globals (`torch.serialization.safe_globals`) exists from 2.4 only.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

TORCH_FLOOR = (2, 1)
"""The oldest torch the toolkit is tested on (the CI's second lane)."""
TORCHVISION_FLOOR = (0, 16)
"""The oldest torchvision the toolkit is tested on."""


def version_tuple(text: str) -> tuple[int, ...]:
    """'2.1.2+cu121' -> (2, 1, 2); '2.6.0a0+git1234' -> (2, 6, 0); vendor suffixes are ignored."""
    parts = []
    for piece in text.split("+", 1)[0].split(".")[:3]:
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        parts.append(int(digits.group()))
    return tuple(parts)


TORCH_VERSION = version_tuple(torch.__version__)


# ------------------------------------------------------------------------------------------ precision


def grad_scaler(device_type: str, enabled: bool) -> Any:
    """A loss scaler for `device_type` ('cuda' or 'cpu'); a disabled one passes every call through.

    Both kinds save the same state dict ({} when disabled), so checkpoints move between versions.
    """
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler(device_type, enabled=enabled)
    # torch < 2.3: only the CUDA scaler exists (it also drives ROCm/DTK devices behind torch.cuda);
    # fp16 scaling on the CPU is not a thing there, so any other device gets a disabled scaler
    return torch.cuda.amp.GradScaler(enabled=enabled and device_type == "cuda")


def autocast(precision: str, device_type: str) -> contextlib.AbstractContextManager:
    """Mixed precision for 'bf16' or 'fp16' on `device_type`; no context for 'fp32'."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device_type, dtype=dtype)


# ------------------------------------------------------------------------------------------ attention


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0) -> torch.Tensor:
    """Fused softmax(q k^T / sqrt(d)) v; q, k, v [B, H, N, d] -> [B, H, N, d]."""
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)


@contextlib.contextmanager
def math_attention() -> Iterator[None]:
    """Run attention with the reference (math) kernel only: fused kernels differ by rounding between devices,
    which comparisons across devices must not mistake for a bug."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3
        with torch.backends.cuda.sdp_kernel(enable_flash=False, enable_math=True, enable_mem_efficient=False):
            yield
        return
    with sdpa_kernel(SDPBackend.MATH):
        yield


# ------------------------------------------------------------------------------------------ torchvision v2


def _v2_hook(transform: Any, new: str, old: str) -> Any:
    return getattr(transform, new) if hasattr(transform, new) else getattr(transform, old)


V2_TRANSFORM_METHOD = "transform" if hasattr(v2.Transform, "transform") else "_transform"
"""Name of the method a v2 transform applies its drawn parameters with (to wrap or count its calls)."""


def v2_make_params(transform: Any, flat_inputs: list[Any]) -> dict[str, Any]:
    """Draw the random parameters of one call of a v2 `transform` (make_params, or _get_params before 0.21)."""
    return _v2_hook(transform, "make_params", "_get_params")(flat_inputs)


def v2_apply(transform: Any, inpt: Any, params: dict[str, Any]) -> Any:
    """Apply a v2 `transform` with given parameters (transform, or _transform before 0.21)."""
    return _v2_hook(transform, "transform", "_transform")(inpt, params)


# ------------------------------------------------------------------------------------------ torch.load


def load_weights_only(path: str | Path, map_location: str | torch.device | None = "cpu") -> Any:
    """torch.load that builds only tensors and plain Python values (dict, list, tuple, str, int, float, bool,
    None, OrderedDict, torch.Size, dtypes); anything else in the file raises `pickle.UnpicklingError`.

    Same on 2.1 and today: `weights_only=True` is passed explicitly (2.1's default is False). Files meant to
    load here must therefore hold no NumPy arrays or custom classes: 2.1 offers no allow-list for them.
    2.1's weights-only unpickler also warns that TypedStorage is deprecated, from inside torch: that line is
    torch's own noise, not the user's, and would break a command's one-line error, so it is silenced here.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="TypedStorage is deprecated", category=UserWarning)
        return torch.load(path, map_location=map_location, weights_only=True)


# ------------------------------------------------------------------------------------------ FLOPs


def count_flops(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, int]:
    """(fn(*args, **kwargs), floating-point operations torch counted while it ran: forward, and backward if
    `fn` calls it). A multiply-add counts as 2."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        out = fn(*args, **kwargs)
    return out, int(counter.get_total_flops())
