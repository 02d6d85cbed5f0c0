"""Can one click's default answer pick the right scale? A study over click candidates.

For every target of each dev-set folder (`promptseg bench prompts --make-dev` or
``--make-cerebellar-check``), one click at the mask's most interior point, as the bench gives
it, and these candidates, each scored by Dice against the gold mask:
- ``blend``: the head's and the box decoder's answers blended (the default before the loose rule);
- ``padP``: the loose candidate, the box decoder's answer to the head's box with a margin of P of
  its longer side (``LOOSE_BOX_PAD``);
- ``first``: what ``segment_points`` returns first now (blend, or loose where its border is sharper).
(At db908c2 it also studied the then "grown" candidate; docs/benchmarks.md has those numbers.)
Per candidate it records image cues a pick could use: area, mean gradient on its border, the
border's gradient relative to the interior's, the inside/outside contrast, the stability of its
logits (SAM's: area above +1 over area above -1) and its predicted score.

The summary prints each candidate's mean per folder, the oracle (best candidate per target),
and every rule "take candidate C instead of the default where cue(C) >= k * cue(default)",
best first by the first folder's mean (tune there, read the others as held out), and the best by
each other folder (the ceiling of such rules there); and the rule that takes the candidate whose area is closest to the same class's mask on the nearest
other slice (a scale prior from an earlier mask, not one click alone).

    python scripts/click_scale_study.py DEV CHECK STARDIST40 --out study.json [--summary-only]
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
from scipy import ndimage

import promptseg.inference.spatial as spatial
from promptseg.bench.prompt_data import load_pair, read_targets
from promptseg.bench.prompts import interior_point
from promptseg.training.evaluate import dice

THRESHOLDS = (0.3, 0.4, 0.5, 0.6)
PADS = (0.15, 0.3, 0.5)
CUES = ("edge", "edge_rel", "contrast", "stability", "score")
FACTORS = (0.9, 1.0, 1.1, 1.25)


def image_cues(logits: np.ndarray, gray: np.ndarray, grad: np.ndarray) -> dict[str, float]:
    """Area and border / contrast / stability cues of the mask ``logits > 0``."""
    m = logits > 0
    if not m.any():
        return dict(area=0, edge=0.0, edge_rel=0.0, contrast=0.0, stability=0.0)
    inner = ndimage.binary_erosion(m)
    border = m & ~inner
    ring = ndimage.binary_dilation(m, iterations=3) & ~m
    ins, out = gray[m], (gray[ring] if ring.any() else gray[m])
    return dict(area=int(m.sum()), edge=float(grad[border].mean()),
                edge_rel=float(grad[border].mean() / (grad[inner].mean() + 1e-6)) if inner.any() else 0.0,
                contrast=float(abs(ins.mean() - out.mean()) / (ins.std() + out.std() + 1e-6)),
                stability=float((logits > 1).sum() / max((logits > -1).sum(), 1)))


def candidates(sp: spatial.SpatialSegmenter, click: tuple[int, int]) -> dict[str, spatial.SpatialMask]:
    """The shipped default (``first``), the blend and the loose answer at each margin in ``PADS``."""
    pad0 = spatial.LOOSE_BOX_PAD
    out = {}
    try:
        for p in PADS:
            spatial.LOOSE_BOX_PAD = p
            masks = sp.click_masks([click], [1])
            if p == pad0:
                out["first"] = next(iter(masks.values()))
            out.setdefault("blend", masks["blend"])
            out[f"pad{p}"] = masks["loose"]
    finally:
        spatial.LOOSE_BOX_PAD = pad0
    return {"blend": out.pop("blend"), **out}


def run_folder(folder: str) -> list[dict]:
    sp, current, rows = spatial.SpatialSegmenter(), None, []
    for t in read_targets(folder):
        img, gt = load_pair(folder, t)
        if t.image != current:
            sp.set_image(img)
            current = t.image
            g = img.astype(np.float32)
            g = g[..., :3].mean(-1) if g.ndim == 3 else g
            g = ndimage.gaussian_filter((g - g.min()) / max(float(np.ptp(g)), 1e-6), 1.0)
            grad = np.hypot(ndimage.sobel(g, 0), ndimage.sobel(g, 1))
        row = {"image": t.image, "target": t.target, "plane": t.extra.get("plane", ""),
               "group": t.extra.get("group", ""), "gt_area": int(gt.sum()), "cands": {}}
        for name, c in candidates(sp, interior_point(gt)).items():
            row["cands"][name] = dict(image_cues(c.logits, g, grad), dice=float(dice(c.mask, gt)), score=c.score)
        rows.append(row)
        print(t.image, t.target, " ".join(f"{k}={v['dice']:.2f}" for k, v in row["cands"].items()), flush=True)
    return rows


def _slice_index(name: str) -> int:
    found = re.findall(r"\d+", name)
    return int(found[-1]) if found else 0


def _nearest_same_class(rows: list[dict], r: dict) -> dict | None:
    same = [q for q in rows if q["image"] != r["image"] and q["target"] == r["target"] and q["plane"] == r["plane"]]
    return min(same, key=lambda q: abs(_slice_index(q["image"]) - _slice_index(r["image"]))) if same else None


def summarise(sets: dict[str, list[dict]]) -> None:
    def line(label: str, pick) -> tuple[float, str]:
        means = [100 * float(np.mean([r["cands"][pick(r)]["dice"] for r in rows])) for rows in sets.values()]
        return means[0], f"{label:34s} " + " | ".join(f"{k} {m:.1f}" for k, m in zip(sets, means))

    names = list(next(iter(sets.values()))[0]["cands"])
    for n in names:
        print(line(n, lambda r, n=n: n)[1])
    names = [n for n in names if n != "first"]
    print(line("oracle", lambda r: max(r["cands"], key=lambda c: r["cands"][c]["dice"]))[1])
    rules = []
    for cue in CUES:
        for n in names[1:]:
            for k in FACTORS:
                rules.append(line(f"{n} if {cue} >= {k}x default", lambda r, n=n, cue=cue, k=k:
                                  n if r["cands"][n][cue] >= k * r["cands"]["blend"][cue] else "blend"))
    print(f"best 10 of {len(rules)} cue rules, by the first folder:")
    for _, text in sorted(rules, reverse=True)[:10]:
        print(" ", text)
    for i, name in enumerate(list(sets)[1:], 1):
        print(f"best 5 by {name} (the ceiling of these rules there):")
        for text in sorted(rules, key=lambda x: float(x[1].split(" | ")[i].split()[1]), reverse=True)[:5]:
            print(" ", text[1])
    for slack in (0.0, 0.3, 0.7):
        def prior(r, rows, slack=slack):
            ex = _nearest_same_class(rows, r)
            if ex is None:
                return "blend"
            miss = {n: abs(np.log(max(c["area"], 1) / ex["gt_area"])) for n, c in r["cands"].items()}
            best = min(miss, key=miss.get)
            return best if miss["blend"] - miss[best] > slack else "blend"
        means = [100 * float(np.mean([r["cands"][prior(r, rows)]["dice"] for r in rows])) for rows in sets.values()]
        print(f"{'area of a nearby slice mask, ' + str(slack):34s} " + " | ".join(f"{k} {m:.1f}" for k, m in zip(sets, means)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--summary-only", action="store_true", help="read --out instead of running")
    a = ap.parse_args()
    if a.summary_only:
        sets = json.loads(Path(a.out).read_text())
    else:
        sets = {Path(f).name: run_folder(f) for f in a.folders}
        Path(a.out).write_text(json.dumps(sets, indent=1))
    summarise(sets)


if __name__ == "__main__":
    main()
