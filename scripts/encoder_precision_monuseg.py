"""A MoNuSeg model trained on float32 embeddings, evaluated on embeddings of the reduced-precision
encoder (docs/benchmarks.md, "Encoder precision"): what the dock's "Fast mode" box costs.

Trains ``supervised`` at 25 % labels on the bench's cached (float32) embeddings, exactly as
``promptseg bench monuseg`` does, then scores the `val` images three ways with the same decoder:
the cached embeddings (what the bench reports), fresh float32 embeddings, and embeddings of the
bfloat16 (CPU) or float16 CUDA-graph encoder; on the CPU also with the decoder's image-sized
products in bfloat16 (the dock's fast mode there).
usage: python scripts/encoder_precision_monuseg.py --data DIR --cache DIR --out OUT [--device cpu]
       [--steps 1500] [--views 1] [--seed 0]
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--views", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    from promptseg.bench.data import by_split, dihedral_views, labelled_subset, load_seg_dir
    from promptseg.bench.methods import train_prompt_model
    from promptseg.bench.metrics import binary_scores
    from promptseg.bench.monuseg import fresh_model, item_of, predict_row, prepare
    from promptseg.inference.embeddings import embed_tiles, image_tiles
    from promptseg.model.backbones.reduced_precision import BFloat16Encoder, HalfGraphEncoder
    from promptseg.model.segmenter import ModelConfig

    rows = load_seg_dir(a.data)
    train, evals = by_split(rows, "train"), by_split(rows, "val")
    names = set(labelled_subset([r.name for r in train], 0.25, a.seed))
    labelled = [v for r in train if r.name in names for v in dihedral_views(r, a.views)]
    cfg = ModelConfig()
    prep = prepare(labelled + evals, cfg, a.cache, a.device, log=lambda s: None)
    model = fresh_model(prep, cfg, a.seed, a.device)
    t0 = time.time()
    train_prompt_model("supervised", model, [item_of(v, prep) for v in labelled], [], prep.prompts, a.steps, a.seed,
                       a.device)
    model.eval()
    train_s = time.time() - t0
    cuda = a.device.startswith("cuda")
    precision = "float16" if cuda else "bfloat16"
    low = (HalfGraphEncoder if cuda else BFloat16Encoder)(model.backbone, a.device)
    # the CPU's fast mode also runs the decoder's image-sized products in bfloat16
    low_dec = None if cuda else copy.deepcopy(model)
    if low_dec is not None:
        low_dec.decoder.dense_parts_to(torch.bfloat16)
    per_image = []
    with torch.no_grad():
        for r in evals:
            x, grid = image_tiles(r.image, model.tile, a.device)
            embs = {"cached": None, "float32": (embed_tiles(model, x, a.device).cpu(), grid),
                    precision: (embed_tiles(model, x, a.device, encoder=low).cpu(), grid)}
            preds = {k: predict_row(model, r.name, prep, a.device, e) == 1 for k, e in embs.items()}
            if low_dec is not None:
                preds[precision + "_decoder"] = predict_row(low_dec, r.name, prep, a.device, embs[precision]) == 1
            row = {"image": r.name, **{f"dice_{k}": round(100 * binary_scores(p, r.mask)["dice"], 2) for k, p in preds.items()}}
            f = preds["float32"]
            for k in [k for k in preds if k.startswith(precision)]:
                q = preds[k]
                row[f"mask_dice_float32_vs_{k}"] = round(2 * float((f & q).sum()) / max(1, int(f.sum() + q.sum())), 4)
            per_image.append(row)
            print(row, flush=True)
    mean = {k: round(float(np.mean([r[k] for r in per_image])), 3) for k in per_image[0] if k != "image"}
    print("mean", mean, flush=True)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "encoder_precision_monuseg.json").write_text(json.dumps(
        {"device": a.device, "precision": precision, "steps": a.steps, "views": a.views, "seed": a.seed,
         "labelled": sorted(names), "train_seconds": round(train_s, 1), "mean": mean, "per_image": per_image}, indent=1))


if __name__ == "__main__":
    main()
