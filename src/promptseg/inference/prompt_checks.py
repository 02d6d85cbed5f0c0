"""Box and click prompts checked before anything is decoded, cached or stored.

Numpy only, so the dock can check what the user drew without importing the model.
"""
from __future__ import annotations

import numpy as np


def check_box(box, shape: tuple[int, int]) -> tuple[float, float, float, float]:
    """A validated (row0, col0, row1, col1) box clipped to the image; ValueError naming the problem."""
    try:
        r0, c0, r1, c1 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(-1))
    except (TypeError, ValueError):
        raise ValueError(f"a box must be 4 numbers (row0, col0, row1, col1), got {box!r}") from None
    if not all(np.isfinite(v) for v in (r0, c0, r1, c1)):
        raise ValueError(f"box {box!r} holds NaN or Inf")
    if r1 < r0 or c1 < c0:
        raise ValueError(f"box {box!r} is inverted: it needs row1 >= row0 and col1 >= col0")
    if r1 == r0 or c1 == c0:
        raise ValueError(f"box {box!r} has zero size: row1 - row0 and col1 - col0 must be > 0")
    h, w = shape
    if r1 < 0 or c1 < 0 or r0 > h - 1 or c0 > w - 1:
        raise ValueError(f"box {box!r} lies outside the image ({h}x{w} pixels)")
    return max(r0, 0.0), max(c0, 0.0), min(r1, h - 1.0), min(c1, w - 1.0)


def check_points(points, labels, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Validated (P, 2) row, col clicks and (P,) labels (1 inside, 0 outside)."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.size == 0 or pts.ndim not in (1, 2) or pts.shape[-1] != 2:
        raise ValueError(f"clicks must be (P, 2) row, col pixels, got shape {pts.shape}")
    pts = pts.reshape(-1, 2)
    if not np.isfinite(pts).all():
        raise ValueError("a click holds NaN or Inf")
    lab = np.ones(len(pts), np.int64) if labels is None else np.asarray(labels).reshape(-1)
    if len(lab) != len(pts):
        raise ValueError(f"{len(pts)} clicks but {len(lab)} click labels")
    if not np.isin(lab, (0, 1)).all():
        raise ValueError(f"click labels must be 1 (inside) or 0 (outside), got {sorted(set(lab.tolist()))}")
    h, w = shape
    out = (pts[:, 0] < 0) | (pts[:, 1] < 0) | (pts[:, 0] > h - 1) | (pts[:, 1] > w - 1)
    if out.any():
        i = int(np.argmax(out))
        raise ValueError(f"click {i} at (row {pts[i, 0]:g}, col {pts[i, 1]:g}) lies outside the image "
                         f"({h}x{w} pixels)")
    if not (lab == 1).any():
        raise ValueError("at least one click must be inside the object (label 1)")
    return pts, lab.astype(np.int64)
