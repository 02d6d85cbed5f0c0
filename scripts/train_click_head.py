"""Train the shipped click head (src/promptseg/weights/click_head) on data here.

Training views: Colin27/AAL slices away from the prompt dev set's slices, without the
cerebellar classes, and MoNuSeg ``train`` crops at native resolution. Left out of training, to
check that new data needs no new training: the cerebellar classes and the stardist
(fluorescence) nuclei. Embeddings are cached as .npy files in ``--cache``.

    python scripts/train_click_head.py --cache /tmp/click-cache --out src/promptseg/weights/click_head
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from promptseg.bench.aal import MRICRON
from promptseg.bench.prompt_data import CEREBELLAR, brain_targets
from promptseg.inference.spatial import medsam_input
from promptseg.io.normalise import hwc_view
from promptseg.model.backbones.litemedsam import TILE, LiteMedSAMBackbone
from promptseg.model.click_head import save_click_head
from promptseg.training.click_head import ClickTrainConfig, ClickView, train_click_head, view_masks

# slice fractions per plane, away from the dev set's (bench/prompt_data.SLICES)
TRAIN_SLICES = {"axial": (0.15, 0.25, 0.32, 0.58, 0.68, 0.8), "coronal": (0.15, 0.25, 0.32, 0.58, 0.7, 0.85),
                "sagittal": (0.1, 0.2, 0.5, 0.8, 0.9)}
CROPS_PER_IMAGE, MAX_NUCLEI = 3, 40


def brain_views():
    for name, img, targets in brain_targets(MRICRON, TRAIN_SLICES, min_area=40):
        masks = [m for tname, m, _ in targets if not any(c in tname for c in CEREBELLAR)]
        if masks:
            yield name, img, (0, 0, *img.shape[:2]), masks


def monuseg_views(root: Path, rng: np.random.Generator):
    with (root / "captions.csv").open(newline="", encoding="utf-8") as fh:
        names = [r["image"] for r in csv.DictReader(fh) if r["split"].strip().lower() == "train"]
    for n in names:
        img = np.asarray(Image.open(root / "images" / n).convert("RGB"))
        mask = np.asarray(Image.open(root / "masks" / n))
        mask = (mask[..., 0] if mask.ndim == 3 else mask) > 0
        h, w = mask.shape
        for k in range(CROPS_PER_IMAGE):
            r0, c0 = int(rng.integers(0, h - TILE)), int(rng.integers(0, w - TILE))
            lab, num = ndimage.label(mask[r0:r0 + TILE, c0:c0 + TILE])
            border = set(np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))) - {0}
            ids = [i for i in range(1, num + 1) if i not in border and (lab == i).sum() >= 30]
            ids = rng.permutation(ids)[:MAX_NUCLEI]
            if len(ids):
                full = [np.pad(lab == i, ((r0, h - r0 - TILE), (c0, w - c0 - TILE))) for i in ids]
                yield f"{Path(n).stem}_{k}", img, (r0, c0, r0 + TILE, c0 + TILE), full


def build_views(cache: Path, monuseg: Path, seed: int) -> list[ClickView]:
    cache.mkdir(parents=True, exist_ok=True)
    encoder = LiteMedSAMBackbone(pretrained=True).eval()
    rng = np.random.default_rng(seed)
    views = []
    for name, img, rect, masks in list(brain_views()) + list(monuseg_views(monuseg, rng)):
        emb_file, mask_file = cache / f"{name}_emb.npy", cache / f"{name}_masks.npy"
        if emb_file.is_file() and mask_file.is_file():
            views.append(ClickView(torch.from_numpy(np.load(emb_file)), np.load(mask_file)))
            continue
        x, scale = medsam_input(hwc_view(img), rect)
        with torch.no_grad():
            emb = encoder(x)[0].half()
        r0, c0, r1, c1 = rect
        vm = view_masks([m[r0:r1, c0:c1] for m in masks], scale)
        np.save(emb_file, emb.numpy())
        np.save(mask_file, vm)
        views.append(ClickView(emb, vm))
        print(f"embedded {name}: {len(vm)} objects", flush=True)
    return views


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", required=True)
    ap.add_argument("--monuseg", default="/work/shared/data/monuseg")
    ap.add_argument("--out", default=None)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(2)
    views = build_views(Path(a.cache), Path(a.monuseg), a.seed)
    print(f"{len(views)} views, {sum(len(v.masks) for v in views)} objects", flush=True)
    if a.out:
        cfg = ClickTrainConfig(steps=a.steps, batch=a.batch, seed=a.seed)
        head = train_click_head(views, cfg, log=lambda s: print(s, flush=True))
        save_click_head(head, a.out, extra={"train": vars(cfg) | {"views": len(views)},
                                            "left_out": ["cerebellar classes", "stardist nuclei"]})
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
