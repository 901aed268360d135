"""Drawing attention maps: the PNG grid (matplotlib, Agg) and the animated GIF of video frames (PIL)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_write_bytes

CMAP = "inferno"
GIF_MIN_SIDE = 224  # small inputs (e.g. 32 px) are enlarged with nearest so the frames stay readable
GIF_FRAME_MS = 100


def _scaled(m: torch.Tensor) -> np.ndarray:
    """A map [S, S] scaled to [0, 1] by its maximum (an all-zero map stays 0)."""
    m = m.float()
    return (m / m.max().clamp_min(1e-12)).numpy()


def write_grid(rows: list, path: Path, mass: float) -> None:
    """One row per image: input | MST mean | MST head 1..H | supervised mean (when present)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    heads = rows[0].heads.shape[0]
    with_sup = any(r.supervised is not None for r in rows)
    titles = ["input", "MST mean"] + [f"MST head {h + 1}" for h in range(heads)]
    titles += ["supervised mean"] if with_sup else []
    fig, axes = plt.subplots(len(rows), len(titles), figsize=(1.8 * len(titles), 1.9 * len(rows)),
                             squeeze=False)
    for r, row in enumerate(rows):
        panels = [row.image.permute(1, 2, 0).numpy(), _scaled(row.mean)]
        panels += [_scaled(h) for h in row.heads]
        if with_sup:
            panels.append(_scaled(row.supervised) if row.supervised is not None else None)
        for c, (ax, panel) in enumerate(zip(axes[r], panels)):
            ax.set_axis_off()
            if panel is not None:
                ax.imshow(panel, cmap=None if c == 0 else CMAP, interpolation="nearest", vmin=0, vmax=1)
            if r == 0:
                ax.set_title(titles[c], fontsize=8)
        axes[r][0].text(-0.05, 0.5, row.name, transform=axes[r][0].transAxes, rotation=90, ha="right",
                        va="center", fontsize=8)
    kept = f"top {round(100 * mass)} % of the attention mass" if 0 < mass < 1 else "raw attention"
    fig.suptitle(f"Last block's class-token attention ({kept})", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _colour(m: torch.Tensor) -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps[CMAP](_scaled(m))[..., :3] * 255).astype(np.uint8)  # [S, S, 3]


def gif_frame(row) -> np.ndarray:
    """input | MST mean | supervised mean (when present), side by side, uint8 [S', k S', 3]."""
    tiles = [row.image.permute(1, 2, 0).numpy(), _colour(row.mean)]
    if row.supervised is not None:
        tiles.append(_colour(row.supervised))
    strip = np.concatenate(tiles, axis=1)
    scale = max(1, -(-GIF_MIN_SIDE // strip.shape[0]))
    return strip.repeat(scale, axis=0).repeat(scale, axis=1)


def write_gif(rows: list, path: Path) -> None:
    """An animated GIF, one frame per row (the video's frames in order), looping."""
    from PIL import Image

    frames = [Image.fromarray(gif_frame(r)) for r in rows]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=GIF_FRAME_MS, loop=0)
    atomic_write_bytes(path, buf.getvalue())
