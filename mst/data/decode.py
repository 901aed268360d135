"""Opening one image file from a data folder, bounded: the file is blamed, never the run.

PIL reads an image's dimensions from its header, before decoding. A decompression bomb (a few hundred bytes
declaring 100,000 x 100,000 pixels) is refused there, at `MAX_PIXELS` (PIL's own warning threshold, where
PIL only warns), before a byte of pixels is allocated; a zero-byte, truncated or non-image file is refused when
PIL cannot identify or decode it. Each refusal is an `UnreadableImage` naming the file.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from .errors import DataError

MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
"""Largest width x height decoded (about 9459 x 9459): PIL's decompression-bomb warning threshold."""
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)
"""What PIL raises for a file it cannot identify or decode (UnidentifiedImageError is an OSError)."""


def _original_line(message: str) -> str:
    """The one-line message of an error that a DataLoader worker re-raised in the main process (torch wraps
    it in 'Caught X in DataLoader worker process N. Original Traceback ...', ending in 'module.X: line')."""
    if not message.startswith("Caught ") or "Original Traceback" not in message:
        return message
    last = message.strip().splitlines()[-1]
    return last.split(f"{UnreadableImage.__name__}: ", 1)[-1]


class UnreadableImage(DataError):
    """An image file that cannot be decoded, or one too large to; the message names the file."""

    def __init__(self, message: str):
        super().__init__(_original_line(message))


def refuse(path: str | Path, reason: str) -> UnreadableImage:
    return UnreadableImage(f"image file {path} {reason}; remove or replace that file (an image folder holds "
                           "image files only), then rerun")


@contextlib.contextmanager
def open_image(path: str | Path) -> Iterator[Image.Image]:
    """The lazily decoded PIL image at `path`, its size checked; UnreadableImage for anything else. Errors
    of the decode inside the block (a truncated file) become UnreadableImage too."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise refuse(path, f"declares more than {MAX_PIXELS} pixels ({width} x {height}): a "
                                       "decompression bomb, or an image far larger than a data set holds")
                yield image
    except UnreadableImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:  # PIL's own header check
        raise refuse(path, f"declares more than {MAX_PIXELS} pixels ({str(err).split(',')[0]}): a decompression "
                           "bomb, or an image far larger than a data set holds") from None
    except DECODE_ERRORS as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise refuse(path, f"cannot be decoded ({type(err).__name__}: {reason})") from None
