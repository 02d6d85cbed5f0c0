"""A corrective click edits the mask on screen where it points, and leaves the rest alone.

After the first click, a further click says the mask shown is wrong there: it misses the object
(an inside click) or spills over it (an outside click). Decoding all the clicks afresh can undo
what was right, for example a whole structure whose scale the first click got right. So the
fresh answer is taken only in its piece of difference from the shown mask that holds the click,
cut to a disk around the click of ``EDIT_REACH`` times the click's distance to the shown mask's
border: an annotator clicks inside an error, so that distance tells the error's size. Where the
fresh answer does not follow the click, the disk of that distance is added or cut. This is the
simplest form of FocalClick's local refinement (Chen et al., CVPR 2022); the reach was chosen
with scripts/click_edit_study.py (docs/benchmarks.md, "Prompts").

Numpy and scipy only; coordinates are (row, col) image pixels.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

EDIT_REACH = 2.0     # the edit's radius, in units of the click's distance (+1 px) to the shown border


def nearest_distance(mask: np.ndarray, r: int, c: int) -> float | None:
    """Distance from (r, c) to the nearest True pixel of ``mask`` (None if it has none), found in
    windows that double around the click, so a large image costs little."""
    h, w = mask.shape
    s = 8
    while True:
        r0, r1, c0, c1 = max(r - s, 0), min(r + s + 1, h), max(c - s, 0), min(c + s + 1, w)
        rr, cc = np.nonzero(mask[r0:r1, c0:c1])
        best = float(np.hypot(rr + r0 - r, cc + c0 - c).min()) if len(rr) else None
        if best is not None and best <= s:
            return best                       # nothing outside the window is nearer
        if (r0, c0, r1, c1) == (0, 0, h, w):
            return best
        s *= 2


def edit_shown(shown: np.ndarray, answer: np.ndarray, click, label: int,
               reach: float = EDIT_REACH) -> np.ndarray | None:
    """``shown`` corrected by one ``click`` (row, col) with ``label`` (1 inside, 0 outside), taking
    the fresh ``answer`` to all clicks only near the click; None where the click is no correction
    of ``shown`` (an inside click already inside it, an outside one already outside)."""
    r, c = (int(round(float(v))) for v in click)
    add = label == 1
    if bool(shown[r, c]) == add:
        return None
    d = nearest_distance(shown if add else ~shown, r, c)
    if d is None:
        return None
    radius = reach * (d + 1)
    h, w = shown.shape
    r0, r1 = max(int(r - radius), 0), min(int(r + radius) + 1, h)
    c0, c1 = max(int(c - radius), 0), min(int(c + radius) + 1, w)
    rr, cc = np.ogrid[r0:r1, c0:c1]
    near = (rr - r) ** 2 + (cc - c) ** 2
    s, a = shown[r0:r1, c0:c1], answer[r0:r1, c0:c1]
    pieces, _ = ndimage.label(((a & ~s) if add else (s & ~a)) & (near <= radius ** 2))
    piece = pieces == pieces[r - r0, c - c0] if pieces[r - r0, c - c0] else near <= (d + 1) ** 2
    out = shown.copy()
    out[r0:r1, c0:c1] = (s | piece) if add else (s & ~piece)
    return out
