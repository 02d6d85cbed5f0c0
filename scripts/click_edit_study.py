"""How far a corrective click should reach: three clicks with and without the local edit.

For every target of each folder (bench/prompt_data.py layout), one interior click, then two
corrective clicks of the simulated annotator, each after the mask on screen. The mask after a
corrective click is either the clicks decoded afresh (``fresh``) or the shown mask edited near
the click (inference/click_edit.py) with a reach of k times the click's distance to its border
(``reach_k``). ``--jitter`` moves each corrective click to a random pixel of the error at least
half as deep as its deepest one, an annotator less exact than the bench's.

    python scripts/click_edit_study.py DEV CHECK [--jitter] [--out study.json]
"""
from __future__ import annotations

import argparse
import json

import numpy as np
from scipy import ndimage

from promptseg.bench.prompt_data import load_pair, read_targets
from promptseg.bench.prompts import corrective_click, dice, interior_point
from promptseg.inference.click_edit import edit_shown
from promptseg.inference.spatial import SpatialSegmenter

REACHES = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0)


def jittered_click(pred: np.ndarray, gt: np.ndarray, rng: np.random.Generator):
    """The bench's corrective click, moved to a random pixel at least half as deep in its error."""
    nxt = corrective_click(pred, gt)
    if nxt is None:
        return None
    err = (gt & ~pred) if nxt[1] == 1 else (pred & ~gt)
    depth = ndimage.distance_transform_edt(np.pad(err, 1))[1:-1, 1:-1]
    rr, cc = np.nonzero(depth >= 0.5 * depth.max())
    i = int(rng.integers(len(rr)))
    return (int(rr[i]), int(cc[i])), nxt[1]


def three_clicks(seg: SpatialSegmenter, gt: np.ndarray, reach: float | None, seed: int, jitter: bool):
    """Dice after 1, 2 and 3 clicks; ``reach`` None: the clicks decoded afresh each time."""
    rng = np.random.default_rng(seed)
    clicks, labels = [interior_point(gt)], [1]
    pred = seg.segment_points(clicks, labels)[0].mask
    out = [dice(pred, gt)]
    for _ in range(2):
        nxt = jittered_click(pred, gt, rng) if jitter else corrective_click(pred, gt)
        if nxt is not None:
            clicks.append(nxt[0])
            labels.append(nxt[1])
            fresh = seg.segment_points(clicks, labels)[0].mask
            edited = None if reach is None else edit_shown(pred, fresh, nxt[0], nxt[1], reach)
            pred = fresh if edited is None else edited
        out.append(dice(pred, gt))
    return out


def study(folder: str, jitter: bool) -> dict:
    seg = SpatialSegmenter()
    rows, image = [], None
    for i, t in enumerate(read_targets(folder)):
        img, gt = load_pair(folder, t)
        if t.image != image:
            seg.set_image(img)
            image = t.image
        row = {"image": t.image, "target": t.target}
        for name, reach in [("fresh", None)] + [(f"reach_{k:g}", k) for k in REACHES]:
            row[name] = three_clicks(seg, gt > 0, reach, i, jitter)
        rows.append(row)
    names = [k for k in rows[0] if k not in ("image", "target")]
    means = {k: [round(100 * float(np.mean([r[k][j] for r in rows])), 1) for j in range(3)] for k in names}
    print(folder, f"n={len(rows)}", "jitter" if jitter else "", "Dice after 1/2/3 clicks:")
    for k, v in means.items():
        print(f"  {k:10s} {v[0]:5.1f} {v[1]:5.1f} {v[2]:5.1f}")
    return {"folder": folder, "jitter": jitter, "means": means, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--jitter", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args()
    res = [study(f, args.jitter) for f in args.folders]
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f)


if __name__ == "__main__":
    main()
