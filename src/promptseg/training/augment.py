"""Weak and strong augmentations for rounds that train on cached tile embeddings.

The backbone is frozen, so most augmentation happens on the embedding grid:
- weak (teacher and student see it): flip / rot90 / rescale of an embedding crop, applied
  identically to its label or pseudo label, so no inverse transform is ever needed;
- strong (student only): feature noise, channel dropout and cutout of a block of tokens,
  whose pseudo label still comes from the unperturbed weak view.
Photometric strong views (colour, gamma, blur, noise; intensity-aware for greyscale medical
images) change pixels, so they are applied to the image and re-embedded once per round
(``photometric_view``), optional because on a CPU every view costs a full encoder pass.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Geometry:
    rot90: int = 0           # quarter turns
    flip: bool = False       # left-right flip after the rotation
    scale: float = 1.0       # rescale factor of the crop

    @classmethod
    def sample(cls, rng: random.Random, scale_range: tuple[float, float] = (0.8, 1.25)) -> "Geometry":
        lo, hi = scale_range
        return cls(rng.randrange(4), rng.random() < 0.5, rng.uniform(lo, hi) if hi > lo else 1.0)


def apply_geometry(x: torch.Tensor, geo: Geometry, size: int | None = None, nearest: bool = False) -> torch.Tensor:
    """Apply ``geo`` to the last two dims of ``x``; ``size`` is the output side after scaling
    (pass the same scaled size for an embedding crop and its labels times the stride)."""
    y = torch.rot90(x, geo.rot90, dims=(-2, -1)) if geo.rot90 else x
    if geo.flip:
        y = torch.flip(y, dims=(-1,))
    if size is not None and size != y.shape[-1]:
        lead = y.shape[:-2]
        flat = y.reshape(-1, 1, *y.shape[-2:])
        if nearest:
            flat = F.interpolate(flat.float(), size=(size, size), mode="nearest").to(y.dtype)
        else:
            flat = F.interpolate(flat, size=(size, size), mode="bilinear", align_corners=False)
        y = flat.reshape(*lead, size, size)
    return y


def invert_geometry(y: torch.Tensor, geo: Geometry) -> torch.Tensor:
    """Undo the rotation and flip of ``geo`` on the last two dims (scale 1 only)."""
    if geo.flip:
        y = torch.flip(y, dims=(-1,))
    return torch.rot90(y, -geo.rot90, dims=(-2, -1)) if geo.rot90 else y


# The 8 dihedral views (quarter turns, then the same with a flip), identity first: what a
# test-time-augmented teacher averages over, and the image views a round embeds.
D4_VIEWS = tuple(Geometry(r, f) for f in (False, True) for r in range(4))


def image_view(x: np.ndarray, geo: Geometry) -> np.ndarray:
    """``geo``'s turn and flip (not its scale) of an image (H, W[, C]) or label map on its first
    two axes, as :func:`apply_geometry` turns a tensor's last two."""
    y = np.rot90(x, geo.rot90, axes=(0, 1)) if geo.rot90 else x
    return np.ascontiguousarray(y[:, ::-1] if geo.flip else y)


def view_suffix(geo: Geometry) -> str:
    """'' for the identity, else e.g. '@r90f' (turned 90°, then flipped)."""
    if not geo.rot90 and not geo.flip:
        return ""
    return f"@r{90 * geo.rot90}{'f' if geo.flip else ''}"


def scaled_side(side: int, geo: Geometry, maximum: int, minimum: int = 4) -> int:
    """Side of a scaled crop, at most ``maximum`` (the tile's token grid: positional
    encodings exist only for that many positions)."""
    return min(maximum, max(minimum, int(round(side * geo.scale))))


def strong_features(emb: torch.Tensor, rng: random.Random, gen: torch.Generator, noise: float = 0.1,
                    channel_drop: float = 0.1, cutout: float = 0.25) -> torch.Tensor:
    """Perturb a (B, C, h, w) embedding batch: Gaussian noise scaled to the feature std,
    channel dropout, and one zeroed square of side ``cutout``·h per crop."""
    out = emb
    if noise > 0:
        std = emb.std(dim=(1, 2, 3), keepdim=True)
        out = out + noise * std * torch.randn(emb.shape, generator=gen, device="cpu").to(emb.device)
    if channel_drop > 0:
        keep = (torch.rand(emb.shape[:2], generator=gen, device="cpu") >= channel_drop).to(emb.device)
        out = out * keep[..., None, None] / (1 - channel_drop)
    if cutout > 0:
        out = out.clone()
        h, w = emb.shape[-2:]
        side = max(1, int(round(cutout * min(h, w))))
        for b in range(emb.shape[0]):
            y, x = rng.randint(0, h - side), rng.randint(0, w - side)
            out[b, :, y:y + side, x:x + side] = 0
    return out


def jitter_pixels(px: torch.Tensor, gen: torch.Generator, strength: float) -> torch.Tensor:
    """A strong photometric view of pixel crops (B, 3, H, W) in [0, 1], for a model's pixel
    branch (the embedding cannot follow: it was computed from the unjittered image). Per crop:
    contrast and brightness, a gain per channel (stain variation), and pixel noise."""
    if strength <= 0:
        return px
    b = px.shape[0]

    def uniform(*shape):
        return (2 * torch.rand(*shape, generator=gen) - 1).to(px.device)

    mean = px.mean(dim=(1, 2, 3), keepdim=True)
    out = (px - mean) * (1 + strength * uniform(b, 1, 1, 1)) + mean + 0.5 * strength * uniform(b, 1, 1, 1)
    out = out * (1 + strength * uniform(b, 3, 1, 1))
    out = out + 0.1 * strength * torch.randn(px.shape, generator=gen).to(px.device)
    return out.clamp(0, 1)


def photometric_view(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A strong photometric view of an image in [0, 1] float (H, W) or (H, W, 3).

    Colour images: brightness, contrast, saturation and per-channel gain (H&E stain
    variation). Greyscale: gamma and a smooth multiplicative bias field (MR-like intensity
    inhomogeneity) instead of hue changes, which mean nothing there. Both: blur or noise."""
    x = np.asarray(image, np.float32)
    lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
    x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    if x.ndim == 3 and x.shape[-1] == 3:
        grey = x.mean(-1, keepdims=True)
        x = grey + (x - grey) * rng.uniform(0.6, 1.4)                      # saturation
        x = x * rng.uniform(0.85, 1.15, size=3).astype(np.float32)          # stain / channel gain
    else:
        x = x ** rng.uniform(0.7, 1.5)                                     # gamma
        h, w = x.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        a, b = rng.uniform(-0.15, 0.15, size=2)
        x = x * (1 + a * (yy / h - 0.5) + b * (xx / w - 0.5))[(...,) + (None,) * (x.ndim - 2)]
    x = (x - x.mean()) * rng.uniform(0.7, 1.3) + x.mean() + rng.uniform(-0.1, 0.1)   # contrast, brightness
    if rng.random() < 0.5:
        from scipy.ndimage import gaussian_filter

        sigma = rng.uniform(0.5, 1.5)
        x = gaussian_filter(x, sigma=(sigma, sigma) + (0,) * (x.ndim - 2))
    else:
        x = x + rng.normal(0, 0.03, size=x.shape).astype(np.float32)
    return np.clip(x, 0, 1).astype(np.float32)
