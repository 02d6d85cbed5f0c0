"""Stain transfer: recolour a labelled image with the colour statistics of an unlabelled one.

Reinhard et al. (2001) colour transfer in CIELAB: each channel of the source is shifted and
scaled to the target's mean and standard deviation over tissue pixels. Recoloured labelled
images, run through the encoder, show the model its labels in the stains of the unlabelled
slides -- which the frozen encoder encodes differently (a pixel-level jitter after the
embedding cannot show it that).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Pixels this light (L* in 0..100) are glass or background, not stained tissue: they would pull
# the statistics towards white on sparse images.
BACKGROUND_L = 90.0


@dataclass(frozen=True)
class StainStats:
    mean: tuple[float, float, float]   # L*, a*, b* over tissue pixels
    std: tuple[float, float, float]


def _rgb_float(image: np.ndarray) -> np.ndarray:
    x = np.asarray(image)
    if x.ndim != 3 or x.shape[-1] not in (3, 4):
        raise ValueError(f"stain transfer needs an RGB image (H, W, 3), got shape {x.shape}")
    x = x[..., :3]
    if np.issubdtype(x.dtype, np.integer):   # 8- or 16-bit: the type's full range is white
        return x.astype(np.float32) / float(np.iinfo(x.dtype).max)
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise ValueError("stain transfer needs finite pixel values (this image has NaN or inf)")
    hi = float(x.max())   # float: [0, 1], or a range whose maximum is white
    return np.clip(x / hi, 0, 1) if hi > 1 else np.clip(x, 0, 1)


def _tissue_stats(lab: np.ndarray) -> StainStats:
    lab = lab.reshape(-1, 3)
    tissue = lab[lab[:, 0] < BACKGROUND_L]
    if len(tissue) < 0.05 * len(lab):
        tissue = lab
    return StainStats(tuple(float(v) for v in tissue.mean(0)), tuple(float(v) for v in tissue.std(0) + 1e-6))


def stain_stats(image: np.ndarray) -> StainStats:
    """Mean and std of L*a*b* over the tissue pixels of an RGB image (all pixels if it has
    almost no tissue)."""
    from skimage.color import rgb2lab

    return _tissue_stats(rgb2lab(_rgb_float(image)))


def recolourings(image: np.ndarray, targets: list[StainStats]) -> list[np.ndarray]:
    """``image`` (RGB) recoloured to each of ``targets``' statistics, as uint8 (H, W, 3) each;
    the image is converted to L*a*b* once."""
    from skimage.color import lab2rgb, rgb2lab

    lab = rgb2lab(_rgb_float(image))
    source = _tissue_stats(lab)
    mean_s, std_s = np.asarray(source.mean), np.asarray(source.std)
    out = []
    for target in targets:
        x = (lab - mean_s) * (np.asarray(target.std) / std_s) + np.asarray(target.mean)
        x[..., 0] = np.clip(x[..., 0], 0, 100)
        out.append((np.clip(lab2rgb(x), 0, 1) * 255 + 0.5).astype(np.uint8))
    return out


def transfer_stain(image: np.ndarray, target: StainStats) -> np.ndarray:
    """``image`` (RGB) recoloured to ``target``'s statistics, as uint8 (H, W, 3)."""
    return recolourings(image, [target])[0]


def donor_assignment(receivers: list[str], donors: list[str], per_receiver: int, seed: int = 0) -> dict[str, list[str]]:
    """Up to ``per_receiver`` different donors for each receiver (all of them if there are fewer),
    taken in turn from a fixed-seed shuffle of ``donors``, so the donors' stains are spread evenly."""
    if per_receiver < 0:
        raise ValueError(f"stain views must be >= 0, got {per_receiver}")
    if per_receiver and not donors:
        raise ValueError("stain views need unlabelled images to take the stains from")
    order = [donors[i] for i in np.random.default_rng(seed).permutation(len(donors))]
    k = min(per_receiver, len(order))
    # consecutive positions of the cycle: k <= len(order) of them are always different donors
    return {r: [order[(i * k + j) % len(order)] for j in range(k)] for i, r in enumerate(receivers)}
