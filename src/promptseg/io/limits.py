"""The largest image promptseg accepts, checked from a file's header or an array's shape
before the pixels are allocated, so a huge input fails fast with a message instead of
filling the memory. Raise it with the ``PROMPTSEG_MAX_PIXELS`` environment variable."""

from __future__ import annotations

import math
import os
from typing import Sequence

__all__ = ["MAX_PIXELS_ENV", "DEFAULT_MAX_PIXELS", "ImageTooLarge", "max_pixels", "check_pixels"]

MAX_PIXELS_ENV = "PROMPTSEG_MAX_PIXELS"
# Pixels (voxels for volumes) per image; embedding one costs memory in proportion to it, and
# this default keeps the peak within a few GB (docs/architecture.md, Safety).
DEFAULT_MAX_PIXELS = 4096 * 4096
VOLUME_FACTOR = 16


class ImageTooLarge(ValueError):
    """An image over the pixel limit (the message names the limit and how to raise it)."""


def max_pixels() -> int:
    """The limit in force: ``PROMPTSEG_MAX_PIXELS`` when set to a positive integer, else the default."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip().replace("_", "")
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(text))
    except ValueError:
        raise ValueError(f"{MAX_PIXELS_ENV}={text!r} is not a number of pixels") from None
    if value <= 0:
        raise ValueError(f"{MAX_PIXELS_ENV} must be a positive number of pixels, got {text!r}")
    return value


def check_pixels(spatial: Sequence[int], what: str = "image") -> None:
    """ImageTooLarge naming the limit and how to raise it when a 2-D image (or one slice of a
    volume: the last two of ``spatial``) holds more pixels than the limit, or a volume more than
    VOLUME_FACTOR times as many voxels (its slices are embedded one at a time)."""
    dims = [int(s) for s in spatial]
    limit = max_pixels()
    plane, total = math.prod(dims[-2:]), math.prod(dims)
    if plane > limit or total > VOLUME_FACTOR * limit:
        shown = " x ".join(str(d) for d in dims)
        over = (f"{plane:,} pixels per image (or slice), over the limit of {limit:,}" if plane > limit else
                f"{total:,} voxels, over the volume limit of {VOLUME_FACTOR} x {limit:,}")
        raise ImageTooLarge(f"{what} is too large: {shown} = {over}; set the environment variable "
                            f"{MAX_PIXELS_ENV} to a larger number of pixels to allow it (memory grows in "
                            "proportion), or crop or downsample the image")
