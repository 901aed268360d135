"""Batched multi-crop augmentation (`augment.backend: batched`): the views of `mst.augment.v2`'s
`MultiCropAugment` for a whole batch, CPU or GPU.

Same ops, order and probabilities [MST appendix §2, BYOL + multi-crop]: RandomResizedCrop (bicubic, scale range
per crop kind, ratio 3/4..4/3, 10 tries then the centre crop, as torchvision), horizontal flip, colour jitter
(brightness, contrast, saturation, hue, in a random order per sample as torchvision does) with jitter_prob,
grayscale, Gaussian blur (sigma ~ U(blur_sigma), kernel `blur_kernel_size`, reflect padding) and solarisation
with their probability per view kind, then normalisation. Differences from the v2 pipeline, on purpose:
- every random number of a sample comes from a torch.Generator seeded with that sample's own seed, in a fixed
  layout (36 uniforms per view, whatever the probabilities), so a sample's crops do not depend on the rest of
  the batch; torch's global generator is never touched;
- the crop is resampled as torchvision v2 does (bicubic, antialiased when shrinking, taps inside the crop box
  only), separably from per-crop 1-D taps: rows by `embedding_bag` (a fused weighted gather-sum), columns by
  a batched matmul; the flip mirrors the column taps. `F.grid_sample` was not used: it cannot antialias;
- pixels stay float in [0, 1] after the crop (v2 rounds to uint8 after every op); solarisation inverts the
  pixels that v2 would (value * 255 >= threshold - 0.5, i.e. rounding to the threshold or above).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

from .v2 import blur_kernel_size

RATIO = (3 / 4, 4 / 3)
TRIES = 10  # RandomResizedCrop's attempts before falling back to the centre crop
# Columns of one view's row of uniforms: the layout never changes, so configurations that differ only in
# probabilities draw the same crops for the same seed.
AREA, LOG_RATIO = slice(0, TRIES), slice(TRIES, 2 * TRIES)
TOP, LEFT, FLIP, JITTER = 20, 21, 22, 23
FACTORS, ORDER = slice(24, 28), slice(28, 32)
GRAY, BLUR, SIGMA, SOLARIZE = 32, 33, 34, 35
WIDTH = 36


# Pixel ops work on images flattened to [N, 3, P] (P = H * W) with one factor per image [N]. On CPU, a fresh
# output buffer costs more than the arithmetic at these sizes (its pages are faulted in), so the ops work in
# place where they can; they avoid comparisons and torch.where (bool tensors cost ~10x an add) by making masks
# with sign(); elementwise ops between strided channel views were up to ~4x slower than on contiguous planes.
LUMA = (0.2989, 0.587, 0.114)  # ITU-R 601 weights, as torchvision's rgb_to_grayscale


def _gray(x: torch.Tensor) -> torch.Tensor:
    """[N, 3, P] -> [N, 1, P] luma."""
    return (LUMA[0] * x[:, 0]).add_(x[:, 1], alpha=LUMA[1]).add_(x[:, 2], alpha=LUMA[2]).unsqueeze(1)


def adjust_brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return (x * f[:, None, None]).clamp_(0, 1)


def adjust_contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    mean = _gray(x).mean(dim=(1, 2))                                        # [N]
    return (x * f[:, None, None]).add_(((1 - f) * mean)[:, None, None]).clamp_(0, 1)


def adjust_saturation(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return (x * f[:, None, None]).add_(_gray(x).mul_((1 - f)[:, None, None])).clamp_(0, 1)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue of each image by its own shift (in turns, [-0.5, 0.5]); x [N, 3, P] in [0, 1]."""
    planes = x.transpose(0, 1).contiguous()                                 # [3, N, P]
    r, g, b = planes.unbind(0)
    maxc = torch.maximum(r, g)
    torch.maximum(maxc, b, out=maxc)
    delta = torch.minimum(r, g)
    torch.minimum(delta, b, out=delta)
    delta.neg_().add_(maxc)                                                 # chroma: max - min
    # which channel holds the maximum, red first then green on ties (as torchvision): 1.0 or 0.0
    is_r = (r - maxc).sign_().add_(1)
    is_g = (g - maxc).sign_().add_(1).mul_(1 - is_r)
    is_b = (1 - is_r).sub_(is_g)
    # hue in sixths of a turn; grey pixels (delta 0) get 0 from zero numerators
    hue = (g - b).mul_(is_r)
    hue.addcmul_((b - r).add_(delta, alpha=2), is_g).addcmul_((r - g).add_(delta, alpha=4), is_b)
    hue.div_(delta.clamp_min(1e-12)).add_((6 * shift + 6)[:, None])         # > 0 for the mod 6 below
    # back to RGB with the same value (maxc) and chroma (delta): channel n in (R, G, B) = (5, 3, 1) is
    # maxc - delta * clamp(min(k, 4 - k), 0, 1) with k = (n + hue) mod 6
    for plane, n in zip(planes, (5.0, 3.0, 1.0)):
        k = hue + n
        k.sub_(torch.floor(k / 6).mul_(6))
        torch.minimum(k, 4 - k, out=k).clamp_(0, 1)
        torch.addcmul(maxc, delta, k, value=-1, out=plane)
    return planes.transpose(0, 1)                                           # [N, 3, P] view


def solarize(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """1 - x where x * 255 >= threshold - 0.5 (uint8 pixels rounding to the threshold or above), else x."""
    above = (x - (threshold - 0.5) / 255).sign_().add_(1).clamp_(max=1)      # 1.0 at or above, else 0.0
    return x + above * (1 - 2 * x)


JITTER_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel: int, side: int) -> torch.Tensor:
    """Separable blur with one sigma per image: x [N, C, side*side], sigma [N]; reflect padding as torchvision."""
    N, C, _ = x.shape
    half = (kernel - 1) / 2
    t = torch.linspace(-half, half, kernel, device=x.device, dtype=x.dtype)
    weights = torch.exp(-0.5 * (t[None] / sigma[:, None]) ** 2)             # [N, k]
    weights = (weights / weights.sum(1, keepdim=True)).repeat_interleave(C, 0)  # [N*C, k]
    pad = kernel // 2
    # one group per (image, channel): every image gets its own kernel in one call
    y = F.pad(x.reshape(1, N * C, side, side), (pad, pad, pad, pad), mode="reflect")
    y = F.conv2d(y, weights[:, None, None, :], groups=N * C)                # rows
    y = F.conv2d(y, weights[:, None, :, None], groups=N * C)                # columns
    return y.reshape(N, C, side * side)


def crop_boxes(u: torch.Tensor, height: int, width: int, scale: tuple[float, float]) -> torch.Tensor:
    """RandomResizedCrop boxes [N, 4] (top, left, h, w) from rows of uniforms u [N, WIDTH] (float64).

    The first of the TRIES (area, log-ratio) draws that fits inside the image wins, as in torchvision; when none
    fits, the centre crop with the ratio clamped to RATIO.
    """
    area = height * width * (scale[0] + (scale[1] - scale[0]) * u[:, AREA])    # [N, TRIES]
    lo, hi = math.log(RATIO[0]), math.log(RATIO[1])
    ratio = torch.exp(lo + (hi - lo) * u[:, LOG_RATIO])
    w, h = torch.round(torch.sqrt(area * ratio)), torch.round(torch.sqrt(area / ratio))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.uint8).argmax(1, keepdim=True)                   # first fitting try (0 when none)
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]
    top = torch.floor(u[:, TOP] * (height - h + 1))
    left = torch.floor(u[:, LEFT] * (width - w + 1))
    in_ratio = width / height
    if in_ratio < RATIO[0]:
        fw, fh = width, round(width / RATIO[0])
    elif in_ratio > RATIO[1]:
        fw, fh = round(height * RATIO[1]), height
    else:
        fw, fh = width, height
    fallback = torch.tensor([(height - fh) // 2, (width - fw) // 2, fh, fw], dtype=u.dtype)
    box = torch.stack([top, left, h, w], 1)
    return torch.where(fits.any(1, keepdim=True), box, fallback)


def _cubic(t: torch.Tensor) -> torch.Tensor:
    """The antialiasing bicubic filter of torch/PIL (a = -0.5), support [-2, 2].

    Written without branches: the inner piece vanishes at |t| = 1 and the outer one at 1 and 2, so clamping
    |t| into each piece's interval and adding gives the piecewise filter.
    """
    a, t = -0.5, t.abs()
    near = t.clamp(max=1)
    far = t.clamp(1, 2)
    return ((a + 2) * near - (a + 3)) * near * near + 1 + (((far - 5) * far + 8) * far - 4) * a


def resize_taps(start: torch.Tensor, length: torch.Tensor, out_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-crop 1-D resampling taps: pixel indices [N, out_size, K] (long) and weights [N, out_size, K].

    Output pixel o of the crop [start, start + length) of an axis is sum_k weight[o, k] * pixel[index[o, k]],
    as torch.nn.functional.interpolate(mode="bicubic", antialias=True) (hence torchvision v2's resize) does:
    the filter is stretched by the shrink factor when shrinking, taps outside the crop get weight 0, and the
    weights of each output pixel sum to 1. K covers the widest filter of the batch.
    """
    scale = (length / out_size)[:, None, None]                             # [N, 1, 1] input px per output px
    stretch = scale.clamp(min=1.0)
    taps = math.ceil(4 * float(stretch.max())) + 1                          # filter support is +-2 * stretch
    centre = start[:, None, None] + scale * (torch.arange(out_size, dtype=start.dtype)[None, :, None] + 0.5)
    first = torch.floor(centre - 2 * stretch + 0.5)                         # [N, S, 1]
    index = first + torch.arange(taps, dtype=start.dtype)                   # [N, S, K]
    local = index - start[:, None, None]
    inside = (local + 1).clamp_(0, 1) * (length[:, None, None] - local).clamp_(0, 1)  # integers: 1 or 0
    weight = _cubic((index + 0.5 - centre) / stretch) * inside
    weight = weight * (1 / weight.sum(2, keepdim=True))
    # taps outside the crop have weight 0: any valid pixel index will do for them
    index = torch.minimum(torch.maximum(index, start[:, None, None]), (start + length - 1)[:, None, None])
    return index.long(), weight


def _resample_rows(rows: torch.Tensor, owner: torch.Tensor, index: torch.Tensor,
                   weight: torch.Tensor) -> torch.Tensor:
    """rows [M, L, D] (an axis of length L first), crop n reads rows[owner[n]]: -> [N, S, D].

    One fused weighted gather-sum (embedding_bag) for every output line of every crop.
    """
    M, L, D = rows.shape
    N, S, K = index.shape
    ids = (owner[:, None, None] * L + index).reshape(N * S, K)
    out = F.embedding_bag(ids, rows.reshape(M * L, D), per_sample_weights=weight.reshape(N * S, K), mode="sum")
    return out.reshape(N, S, D)


def _apply(x: torch.Tensor, mask: torch.Tensor, fn, values) -> None:
    """x[i] = fn(x[i], values[i]) in place for the images where `mask` (CPU) holds."""
    idx = mask.nonzero()[:, 0]
    if len(idx) == 0:
        return
    arg = None if values is None else values[idx].to(x.device, x.dtype)
    idx = idx.to(x.device)
    x.index_copy_(0, idx, fn(x.index_select(0, idx), arg))


def photometric(x: torch.Tensor, u: torch.Tensor, c, size: int, B: int, blur_p, solarize_p) -> dict:
    """Colour jitter, grayscale, blur and solarisation in place on x [N, 3, size*size] (float in [0, 1], any
    device), N = V * B view-major rows whose uniforms are u [N, WIDTH] (CPU); blur_p and solarize_p hold one
    probability per view. Returns the parameters drawn, each [N, ...]."""
    jitter = u[:, JITTER] < c.jitter_prob
    lows = torch.tensor([max(0.0, 1 - j) for j in c.jitter[:3]] + [-c.jitter[3]], dtype=u.dtype)
    highs = torch.tensor([1 + j for j in c.jitter[:3]] + [c.jitter[3]], dtype=u.dtype)
    factors = lows + (highs - lows) * u[:, FACTORS]                         # [N, 4]
    order = u[:, ORDER].argsort(1)                                          # [N, 4] a random permutation
    for position in range(4):
        for op, adjust in enumerate(JITTER_OPS):
            if c.jitter[op] == 0:
                continue  # torchvision leaves out an op whose range is 0
            _apply(x, jitter & (order[:, position] == op), adjust, factors[:, op])
    gray = u[:, GRAY] < c.gray_prob
    _apply(x, gray, lambda t, _: _gray(t).expand(-1, 3, -1), None)
    blur = u[:, BLUR] < torch.tensor(blur_p, dtype=u.dtype).repeat_interleave(B)
    sigma = c.blur_sigma[0] + (c.blur_sigma[1] - c.blur_sigma[0]) * u[:, SIGMA]
    kernel = blur_kernel_size(size)
    _apply(x, blur, lambda t, s: gaussian_blur(t, s, kernel, size), sigma)
    solarized = u[:, SOLARIZE] < torch.tensor(solarize_p, dtype=u.dtype).repeat_interleave(B)
    _apply(x, solarized, lambda t, _: solarize(t, c.solarize_threshold), None)
    return {"jitter": jitter, "factors": factors, "order": order, "gray": gray, "blur": blur, "sigma": sigma,
            "solarize": solarized}


def normalise(x: torch.Tensor, c) -> torch.Tensor:
    """(x - mean) / std of x [N, 3, P] as one multiply-add over rows of [N*3, P] (the broadcast CPU kernels
    handle best) -> [N*3, P]."""
    N, dev = x.shape[0], x.device
    scale = (1 / torch.tensor(c.std, device=dev)).repeat(N)[:, None]          # [N*3, 1]
    shift = (-torch.tensor(c.mean, device=dev)).repeat(N)[:, None] * scale
    return torch.addcmul(shift, x.reshape(N * 3, -1), scale)


def draw_uniforms(gen: torch.Generator, seeds, n_views: int) -> torch.Tensor:
    """Uniforms [B, n_views, WIDTH] (float64, CPU), each sample's from its own seed alone."""
    rows = []
    for seed in seeds:
        gen.manual_seed(int(seed))
        rows.append(torch.rand(n_views, WIDTH, generator=gen, dtype=torch.float64))
    return torch.stack(rows)


class BatchMultiCrop:
    """uint8 images [B, 3, H, W] + one seed per sample -> [global 1, global 2, local 1, ..., local n_local].

    Globals are float [B, 3, global_size, global_size], locals [B, 3, local_size, local_size], normalised, on
    the images' device. A list of [3, H, W] images of different sizes is also accepted (augmented per size).
    """

    def __init__(self, aug_cfg):
        self.cfg = aug_cfg
        self.n_views = 2 + aug_cfg.n_local
        self.gen = torch.Generator()  # reseeded per sample: only its seed matters

    def draw(self, seeds: list[int]) -> torch.Tensor:
        """Uniforms [B, n_views, WIDTH] (float64, CPU), each sample's from its own seed alone."""
        return draw_uniforms(self.gen, seeds, self.n_views)

    def __call__(self, images, seeds: list[int], return_params: bool = False):
        if isinstance(images, (list, tuple)):
            return self._by_size(images, seeds, return_params)
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 images [B, 3, H, W], got {images.dtype} {tuple(images.shape)}")
        if len(seeds) != len(images):
            raise ValueError(f"{len(images)} images but {len(seeds)} seeds")
        c = self.cfg
        u = self.draw(seeds)                                                    # [B, V, WIDTH]
        x = images.float().mul_(1 / 255)                                        # [B, 3, H, W]
        kinds = [(slice(0, 2), c.global_size, c.global_scale, c.blur_prob[:2], c.solarize_prob[:2])]
        if c.n_local:
            kinds.append((slice(2, None), c.local_size, c.local_scale, c.blur_prob[2:] * c.n_local,
                          c.solarize_prob[2:] * c.n_local))
        crops, params = [], []
        for views, size, scale, blur_p, solarize_p in kinds:
            out, p = self._kind(x, u[:, views], size, scale, blur_p, solarize_p)
            crops += list(out)
            params.append(p)
        if not return_params:
            return crops
        return crops, {k: torch.cat([p[k] for p in params], 1) for k in params[0]}  # each [B, V, ...]

    def _kind(self, x, u, size, scale, blur_p, solarize_p):
        """The V views of one crop kind: x [B, 3, H, W] float, u [B, V, WIDTH] -> [V, B, 3, S, S], params."""
        c, dev = self.cfg, x.device
        B, V = u.shape[:2]
        H, W = x.shape[-2:]
        u = u.transpose(0, 1).reshape(V * B, WIDTH)                            # view-major rows
        box = crop_boxes(u, H, W, scale)
        flip = u[:, FLIP] < c.flip_prob
        edges = box.float()  # whole pixels: exact in float32
        row_index, row_weight = resize_taps(edges[:, 0], edges[:, 2], size)   # [N, S, K]
        col_index, col_weight = resize_taps(edges[:, 1], edges[:, 3], size)
        col_index[flip], col_weight[flip] = col_index[flip].flip(1), col_weight[flip].flip(1)  # mirror
        owner = torch.arange(B, device=dev).repeat(V)                           # view-major crop -> image
        # separable: each crop row (a line of 3*W values) by a weighted gather of image rows, then the columns
        # by one batched matmul with dense [S, W] column matrices (a banded gather there needed a transpose
        # of the [N, S, 3*W] intermediate, which cost more than the matmul)
        out = _resample_rows(x.permute(0, 2, 1, 3).reshape(B, H, 3 * W), owner, row_index.to(dev),
                             row_weight.to(dev))                                # [N, S, 3*W]
        cols = torch.zeros(V * B, size, W).scatter_add_(2, col_index, col_weight).to(dev)  # [N, S, W]
        out = torch.bmm(out.reshape(V * B, size * 3, W), cols.transpose(1, 2))  # [N, S*3, S]
        out = out.reshape(V * B, size, 3, size).transpose(1, 2).reshape(V * B, 3, size * size)
        out = out.clamp_(0, 1)  # [N, 3, P]; bicubic overshoots, v2 clamps when it rounds to uint8

        photo = photometric(out, u, c, size, B, blur_p, solarize_p)
        out = normalise(out, c).reshape(V, B, 3, size, size)
        per_view = {"box": box, "flip": flip, **photo}
        per_view = {k: v.reshape(V, B, *v.shape[1:]).transpose(0, 1) for k, v in per_view.items()}
        return out, per_view

    def _by_size(self, images, seeds, return_params):
        """Images of different sizes: augment each size's group as a batch, put the samples back in order."""
        groups: dict[tuple, list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault(tuple(image.shape), []).append(i)
        crops, params = None, None
        for idx in groups.values():
            part = self(torch.stack([images[i] for i in idx]), [seeds[i] for i in idx], return_params=True)
            if crops is None:
                crops = [t.new_empty((len(images), *t.shape[1:])) for t in part[0]]
                params = {k: v.new_empty((len(images), *v.shape[1:])) for k, v in part[1].items()}
            where = torch.tensor(idx)
            for out, t in zip(crops, part[0]):
                out[where.to(t.device)] = t
            for k, v in part[1].items():
                params[k][where] = v
        return (crops, params) if return_params else crops


class MultiCropCollate:
    """DataLoader collate_fn for items (uint8 image [3, H, W], label, sample seed): (list of crops, labels).

    Runs in the loader worker (or the main process when num_workers == 0); picklable for worker processes.
    """

    def __init__(self, aug_cfg):
        self.augment = BatchMultiCrop(aug_cfg)

    def __call__(self, items):
        images, labels, seeds = zip(*items)
        same = all(image.shape == images[0].shape for image in images)
        crops = self.augment(torch.stack(images) if same else list(images), list(seeds))
        return crops, default_collate(list(labels))
