"""Attention maps [appendix §12-13]: the last block's class-token attention over the patches, per head and
averaged over heads, upsampled to the image, optionally keeping only the top patches that hold a fraction of
the attention mass (DINO shows them at 60 %). MST's teacher beside a supervised backbone when one exists.

`run_attention` writes attention.png (one row per image: input | MST mean | MST heads | supervised mean)
and, given a folder of video frames, attention.gif (the same maps frame by frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from ..config import Config
from ..run.record import is_done
from ..run.runtime import Interrupted
from .stage import Stage, StopFn, load_frozen, run_stage, stop_requested

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class ImageError(ValueError):
    """A user-facing problem with an image name, path or frame folder (its message is one line)."""


def _sample_names() -> list[str]:
    from skimage import data

    return sorted(n for n in ("astronaut", "camera", "cat", "chelsea", "coffee", "rocket", "hubble_deep_field",
                              "immunohistochemistry", "retina", "horse", "coins") if hasattr(data, n))


def load_image(spec: str) -> tuple[str, torch.Tensor]:
    """(name, uint8 image [3, H, W]) from a file path or a scikit-image sample name (bundled, offline)."""
    import numpy as np

    path = Path(spec).expanduser()
    if path.is_file():
        from ..data.decode import UnreadableImage, open_image

        try:
            with open_image(path) as im:
                array = np.asarray(im.convert("RGB"))
        except UnreadableImage as err:
            raise ImageError(f"cannot read image {path}: {err}; give a PNG/JPEG file") from None
        name = path.stem
    else:
        from skimage import data

        if spec not in _sample_names():
            raise ImageError(f"image '{spec}' is neither a file nor a scikit-image sample; give a path or one "
                             f"of {', '.join(_sample_names())}")
        array = np.asarray(getattr(data, spec)())
        name = spec
    if array.dtype != np.uint8:  # e.g. boolean or 16-bit samples
        array = (255 * (array.astype(np.float64) / max(float(array.max()), 1e-12))).astype(np.uint8)
    image = torch.from_numpy(np.array(array, copy=True))  # own, writable memory
    if image.ndim == 2:
        image = image.unsqueeze(-1).expand(-1, -1, 3)
    return name, image[..., :3].permute(2, 0, 1).contiguous()  # [3, H, W]


def frame_paths(folder: str | Path) -> list[Path]:
    """The image files of a frame folder, in name order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"video frame folder {folder} does not exist; give a folder of PNG/JPEG frames")
    frames = sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
    if not frames:
        raise ImageError(f"no image frames ({', '.join(FRAME_SUFFIXES)}) in {folder}; give a folder of frames")
    return frames


def square_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [3, H, W] -> uint8 [3, size, size]: bicubic resize of the short side, centre crop."""
    ops = v2.Compose([v2.Resize(size, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
                      v2.CenterCrop(size)])
    return ops(image)


def normalise(image: torch.Tensor, aug_cfg) -> torch.Tensor:
    """uint8 [3, S, S] -> float [3, S, S] normalised like the model's training data."""
    return v2.functional.normalize(image.float() / 255.0, list(aug_cfg.mean), list(aug_cfg.std))


@torch.no_grad()
def attention_maps(backbone: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Normalised image [3, S, S] -> the last block's class-token attention per head [heads, S/p, S/p]."""
    p = backbone.patch_size
    h, w = x.shape[1] // p, x.shape[2] // p
    attn = backbone(x.unsqueeze(0), return_attn=True).attn  # [1, heads, L]
    return attn[0].float().reshape(-1, h, w)


def keep_mass(maps: torch.Tensor, mass: float) -> torch.Tensor:
    """Boolean mask of the highest patches of each map that together hold `mass` of its attention.

    maps [..., h, w] -> bool [..., h, w]. Patches are taken in decreasing order until the running share
    reaches `mass` (the patch that crosses it is kept). mass <= 0 or >= 1 keeps everything.
    """
    if mass <= 0 or mass >= 1:
        return torch.ones_like(maps, dtype=torch.bool)
    flat = maps.flatten(-2)  # [..., L]
    values, order = flat.sort(dim=-1, descending=True)
    share = values.cumsum(-1) / values.sum(-1, keepdim=True).clamp_min(1e-12)
    before = share - values / values.sum(-1, keepdim=True).clamp_min(1e-12)  # share held by higher patches
    keep_sorted = before < mass
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return keep.reshape(maps.shape)


def upsample(maps: torch.Tensor, size: int) -> torch.Tensor:
    """[..., h, w] -> [..., size, size], each patch a block of pixels (nearest)."""
    lead = maps.shape[:-2]
    up = F.interpolate(maps.reshape(-1, 1, *maps.shape[-2:]).float(), size=(size, size), mode="nearest")
    return up.reshape(*lead, size, size)


def shown(maps: torch.Tensor, mass: float, size: int) -> torch.Tensor:
    """The maps as displayed: attention where kept by `keep_mass`, 0 elsewhere, upsampled to `size`."""
    return upsample(maps * keep_mass(maps, mass), size)


@dataclass
class Row:
    """One image's maps, upsampled to the image: ready to draw."""

    name: str
    image: torch.Tensor          # uint8 [3, S, S]
    mean: torch.Tensor           # [S, S] MST mean over heads
    heads: torch.Tensor          # [heads, S, S] MST per head
    supervised: torch.Tensor | None  # [S, S] supervised mean over heads


def make_row(name: str, image: torch.Tensor, size: int, mst, supervised, mass: float) -> Row:
    """`mst` and `supervised` are (backbone, augment config) pairs; supervised may be None."""
    crop = square_crop(image, size)
    maps = attention_maps(mst[0], normalise(crop, mst[1]))  # [heads, h, w]
    sup = None
    if supervised is not None:
        sup_maps = attention_maps(supervised[0], normalise(crop, supervised[1]))
        sup = shown(sup_maps.mean(0), mass, size)
    return Row(name, crop, shown(maps.mean(0), mass, size), shown(maps, mass, size), sup)


def default_supervised_dir(*stage_dirs: Path) -> Path | None:
    """The first finished `supervised/` stage beside one of `stage_dirs` (run folders hold one folder per
    stage), or None."""
    for stage_dir in stage_dirs:
        candidate = Path(stage_dir).resolve().parent / "supervised"
        if is_done(candidate) is not None and (candidate / "checkpoint.pt").is_file():
            return candidate
    return None


def run_attention(cfg: Config, pretrain_dir: str | Path, out_dir: str | Path, should_stop: StopFn = None,
                  record_extra: dict | None = None, show_progress: bool = True, images: list[str] | None = None,
                  supervised_dir: str | Path | None = None, video: str | Path | None = None,
                  size: int | None = None, allow_partial: bool = False) -> dict:
    """Attention maps of the teacher in `pretrain_dir` for `images` (default cfg.eval.attention_images).

    supervised_dir: a `supervised` stage folder (default: a finished one beside out_dir or pretrain_dir). video: a folder
    of frames, written as attention.gif. size: side of the square input (default cfg.augment.eval_crop;
    position embeddings are interpolated for other sizes). Maps take seconds: a stop request is honoured
    between images and the next run starts over. An unfinished pre-training is refused unless
    `allow_partial` (the record is then labelled partial).
    """
    from .render import write_gif, write_grid
    from .supervised import load_supervised

    names = list(images) if images else list(cfg.eval.attention_images)
    side = size or cfg.augment.eval_crop

    def body(stage: Stage) -> dict:
        stage.load()
        loaded = [load_image(n) for n in names]  # bad names fail before any work
        frames = frame_paths(video) if video else []
        backbone, ckpt_cfg, digest = load_frozen(pretrain_dir, "teacher", stage.device)
        if side % backbone.patch_size:
            raise ImageError(f"attention image size {side} is not a multiple of the patch size "
                             f"{backbone.patch_size}; choose a multiple")
        # maps are a handful of forwards: on the CPU; each model sees pixels normalised as in its training
        mst = (backbone.cpu(), (ckpt_cfg or cfg).augment)   # a weights file has no config: the stage's
        sup_dir = Path(supervised_dir) if supervised_dir else default_supervised_dir(stage.out, Path(pretrain_dir))
        supervised = None
        if sup_dir is not None:
            sup_backbone, sup_cfg = load_supervised(sup_dir)
            supervised = (sup_backbone, sup_cfg.augment)
        mass = cfg.eval.attention_threshold

        def check_stop(i: int) -> None:
            if stop_requested(should_stop):
                stage.save({})
                raise Interrupted(i)

        rows = []
        for i, (name, image) in enumerate(loaded):
            check_stop(i)
            rows.append(make_row(name, image, side, mst, supervised, mass))
        files = {"grid": "attention.png"}
        write_grid(rows, stage.out / files["grid"], mass)
        if frames:
            frame_rows = []
            for i, path in enumerate(frames):
                check_stop(len(rows) + i)
                name, image = load_image(str(path))
                frame_rows.append(make_row(name, image, side, mst, supervised, mass))
            files["video"] = "attention.gif"
            write_gif(frame_rows, stage.out / files["video"])
        stage.checkpoint_path.unlink(missing_ok=True)
        metrics = {"images": len(rows), "heads": int(backbone.num_heads), "frames": len(frames)}
        return stage.record("done", metrics, weights_sha256=digest, files=files, images=names, size=side,
                            threshold=mass, pretrain_dir=str(pretrain_dir),
                            supervised_dir=str(sup_dir) if sup_dir else None, video=str(video) if video else None)

    return run_stage("attention", cfg, out_dir, record_extra, body, pretrain_dir, allow_partial)
