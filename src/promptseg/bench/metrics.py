"""Per-image segmentation scores at native resolution and at 224² (the seed papers' protocol).

Binary tasks: Dice and IoU of the foreground, per image, then averaged over images (the
LViT/DuSSS MoNuSeg protocol calls the averaged foreground IoU "mIoU"). For 224² both the
prediction and the ground truth are resized with nearest-neighbour sampling.
"""
from __future__ import annotations

import numpy as np

from ..training.evaluate import dice, iou

SEED_SIZE = 224


def resize_nearest(a: np.ndarray, size: int = SEED_SIZE) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D map to size x size (pixel-centre sampling)."""
    h, w = a.shape[:2]
    ys = np.minimum(((np.arange(size) + 0.5) * h / size).astype(np.int64), h - 1)
    xs = np.minimum(((np.arange(size) + 0.5) * w / size).astype(np.int64), w - 1)
    return a[ys[:, None], xs[None, :]]


def binary_scores(pred: np.ndarray, gt: np.ndarray, size: int = SEED_SIZE) -> dict[str, float]:
    """Foreground Dice / IoU of one image at native resolution and at ``size``²."""
    p, g = np.asarray(pred) > 0, np.asarray(gt) > 0
    if p.shape != g.shape:
        raise ValueError(f"prediction shape {p.shape} != ground truth shape {g.shape}")
    p2, g2 = resize_nearest(p, size), resize_nearest(g, size)
    return {"dice": dice(p, g), "miou": iou(p, g), "dice_224": dice(p2, g2), "miou_224": iou(p2, g2)}


def mean_scores(per_image: list[dict[str, float]]) -> dict[str, float]:
    """Average every score over images (each image counts once)."""
    if not per_image:
        raise ValueError("no images were scored")
    keys = [k for k in per_image[0] if isinstance(per_image[0][k], float)]
    return {k: float(np.mean([s[k] for s in per_image])) for k in keys}
