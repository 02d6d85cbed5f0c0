"""Dice / IoU of label maps and their summaries over images and classes."""
from __future__ import annotations

import numpy as np


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice of two boolean masks; 1.0 when both are empty (nothing to find, nothing found)."""
    p, g = np.asarray(pred, bool), np.asarray(gt, bool)
    denom = p.sum() + g.sum()
    return 1.0 if denom == 0 else float(2 * (p & g).sum() / denom)


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    p, g = np.asarray(pred, bool), np.asarray(gt, bool)
    union = (p | g).sum()
    return 1.0 if union == 0 else float((p & g).sum() / union)


def per_class_dice(pred: np.ndarray, gt: np.ndarray, n_classes: int) -> list[float | None]:
    """Dice per class id 1..n; None where the class is absent from both maps (not scored)."""
    out: list[float | None] = []
    for k in range(1, n_classes + 1):
        p, g = pred == k, gt == k
        out.append(None if not (p.any() or g.any()) else dice(p, g))
    return out


def edited_fraction(proposal: np.ndarray, final: np.ndarray) -> float:
    """Fraction of pixels whose label the annotator changed."""
    return float((np.asarray(proposal) != np.asarray(final)).mean())


def summarise(scores: list[list[float | None]], class_names: list[str]) -> dict:
    """Mean Dice per class over images (absent-everywhere classes skipped) and their mean."""
    per_class = {}
    for k, name in enumerate(class_names):
        vals = [s[k] for s in scores if s[k] is not None]
        if vals:
            per_class[name] = float(np.mean(vals))
    mean = float(np.mean(list(per_class.values()))) if per_class else 0.0
    return {"dice": mean, "per_class": per_class}
