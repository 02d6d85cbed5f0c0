"""Is shape-based interpolation between the labelled slices a better AAL floor than copying the
nearest one? (docs/benchmarks.md, "AAL coarse classes": what limits the target.)

The bench's protocol (`promptseg bench aal`): the same slices, the same evenly spread labelled
5 %, the same per-class Dice over the other slices. Each unlabelled slice between two labelled
ones gets, per class, the linear blend of the two slices' signed distance maps (positive inside),
and takes the class with the largest blended value where it is positive; a class present on
one side only shrinks to nothing at the midpoint. Slices outside the labelled range copy the
nearest labelled slice, as `nearest_slice` does.
usage: python scripts/aal_slice_interpolation.py [--plane axial] [--step 1 (2 = the --quick setting)]
"""
from __future__ import annotations

import argparse

import numpy as np
from scipy import ndimage as ndi


def signed_distance(mask: np.ndarray) -> np.ndarray | None:
    if not mask.any():
        return None
    return ndi.distance_transform_edt(mask) - ndi.distance_transform_edt(~mask)


def interpolate(lo: np.ndarray, hi: np.ndarray, t: float, n_classes: int) -> np.ndarray:
    best = np.full(lo.shape, -np.inf)
    out = np.zeros(lo.shape, np.int32)
    for c in range(1, n_classes + 1):
        a, b = signed_distance(lo == c), signed_distance(hi == c)
        if a is None and b is None:
            continue
        a = np.full(b.shape, -b.max() - 1) if a is None else a   # vanishes halfway to the empty side
        b = np.full(a.shape, -a.max() - 1) if b is None else b
        s = (1 - t) * a + t * b
        take = s > best
        best[take], out[take] = s[take], c
    out[best <= 0] = 0
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--plane", default="axial")
    ap.add_argument("--step", type=int, default=1)
    ap.add_argument("--labelled", type=float, default=0.05)
    a = ap.parse_args()
    from promptseg.bench.aal import load_volumes, slices, spread_indices
    from promptseg.training.evaluate import per_class_dice, summarise
    from promptseg.inference.volume import nearest_seed

    t1, labels, classes = load_volumes()
    rows = slices(t1, labels, a.plane, a.step)
    lab = spread_indices(len(rows), max(2, int(round(a.labelled * len(rows)))))
    others = [i for i in range(len(rows)) if i not in lab]
    k = len(classes)
    preds = {"nearest_slice": {i: rows[nearest_seed(i, lab)].mask for i in others}, "interpolated": {}}
    for i in others:
        below, above = [s for s in lab if s < i], [s for s in lab if s > i]
        if not below or not above:
            preds["interpolated"][i] = preds["nearest_slice"][i]
            continue
        s0, s1 = below[-1], above[0]
        preds["interpolated"][i] = interpolate(rows[s0].mask, rows[s1].mask, (i - s0) / (s1 - s0), k)
    print(f"{a.plane}, {len(rows)} slices, labelled {lab}")
    for name, p in preds.items():
        s = summarise([per_class_dice(p[i], rows[i].mask, k) for i in others], classes)
        per = ", ".join(f"{c} {100 * v:.1f}" for c, v in s["per_class"].items())
        print(f"{name}: mean {100 * s['dice']:.2f} ({per})")


if __name__ == "__main__":
    main()
