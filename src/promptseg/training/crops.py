"""Crops of cached tile embeddings for training: a random window of a labelled item, and the
pixels under a window."""
from __future__ import annotations

import random

import torch

from .types import LabelledCrop, TrainItem


def pixel_crop(pixels: torch.Tensor | None, t: int, y: int, x: int, c: int, stride: int) -> torch.Tensor | None:
    """Tile ``t``'s pixels under the token crop (y, x, c) as float in [0, 1] (None stays None)."""
    if pixels is None:
        return None
    return pixels[t, :, y * stride:(y + c) * stride, x * stride:(x + c) * stride].float() / 255.0


def stack_pixels(px: list[torch.Tensor | None], device) -> torch.Tensor | None:
    """Pixel crops as one batch, or None if any is missing (a model without a pixel branch
    needs none; one with it then says clearly that they are missing)."""
    return None if any(p is None for p in px) else torch.stack(px).to(device)


def sample_crop(item: TrainItem, crop: int, stride: int, rng: random.Random) -> LabelledCrop:
    """A random ``crop``² window (0: the whole grid) of a random tile of ``item``, with its
    labels mapped to global class indices; windows with foreground are preferred."""
    t = rng.randrange(item.emb.shape[0])
    g = item.emb.shape[-1]
    c = g if crop <= 0 or crop >= g else crop
    lab = item.labels[t]
    # Prefer crops that contain foreground, so small structures are seen often.
    for _ in range(4):
        y, x = rng.randint(0, g - c), rng.randint(0, g - c)
        sub = lab[y * stride:(y + c) * stride, x * stride:(x + c) * stride]
        if (sub > 0).any():
            break
    emb = item.emb[t, :, y:y + c, x:x + c]
    # Global class index map for the crop: -1 ignore, 0 background, k+1 global class k.
    lut = torch.tensor([0] + [k + 1 for k in item.classes], dtype=torch.long)
    glob = torch.where(sub >= 0, lut[sub.clamp_min(0)], torch.full_like(sub, -1))
    return LabelledCrop(emb, glob, (y, x, c), pixel_crop(item.pixels, t, y, x, c, stride))
