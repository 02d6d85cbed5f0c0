"""Issue-3 check on MoNuSeg: one SSL method vs another on the same labelled subset.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/ssl_comparison.py --data ../shared/data/monuseg \
        --method promptseg --steps 300

25 % of the train rows (6 images, fixed seed 0) are labelled, the other 18 train images are
the unlabelled pool, Dice is measured on the `val` rows (never trained on). Every method starts
from the same seeded PromptSegModel (LiteMedSAM encoder + decoder init) and runs through
engine.ssl.SSLTrainer, so `supervised` (unlabelled weight 0) gets the same weak augmentations
and step budget. Prints the held-out Dice of the student and of the EMA teacher. Run one
process per method (they can run side by side); embeddings are cached in --cache.
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch
from skimage.io import imread

from promptseg.engine.dataset import class_prompts, make_item
from promptseg.engine.embeddings import EmbeddingCache
from promptseg.engine.evaluate import dice, predict_labels
from promptseg.engine.ssl import METHODS, SSLTrainer, UnlabelledItem, method_config
from promptseg.model.segmenter import ModelConfig, PromptSegModel
from promptseg.model.text import TextEncoder


def overrides(pairs: list[str]) -> dict:
    out = {}
    for p in pairs:
        k, v = p.split("=", 1)
        out[k] = v.lower() == "true" if v.lower() in ("true", "false") else float(v) if "." in v else int(v)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--method", choices=METHODS, required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--labelled", type=float, default=0.25)
    ap.add_argument("--cache", default="/tmp/monu_cache")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="SSLConfig overrides, e.g. teacher_views=4 w_exemplar=0.5")
    a = ap.parse_args()
    root = Path(a.data)
    rows = list(csv.DictReader(open(root / "captions.csv")))
    train = [r["image"] for r in rows if r["split"] == "train"]
    val = [r["image"] for r in rows if r["split"] == "val"]
    torch.manual_seed(0)
    base = PromptSegModel(ModelConfig())
    cache = EmbeddingCache(a.cache, base)
    data = {}
    for n in train + val:
        img, mask = imread(root / "images" / n), imread(root / "masks" / n) > 0
        emb, grid = cache.get(img)
        data[n] = (mask, emb, grid)
    lab_names = list(np.random.default_rng(0).choice(train, int(round(a.labelled * len(train))), replace=False))
    lab = [make_item(n, data[n][1], data[n][2], data[n][0].astype(int), ["nucleus"], ["nucleus"]) for n in lab_names]
    unl = [UnlabelledItem(n, data[n][1]) for n in train if n not in lab_names]
    prompts = class_prompts(["nucleus"], TextEncoder(base.cfg.text_model))
    tr = SSLTrainer(base, lab, unl, prompts, method_config(a.method, a.steps, **overrides(a.set)))
    t0 = time.time()
    while tr.step_count < a.steps:
        d = tr.step()
        if tr.step_count % 50 == 0:
            print(tr.step_count, {k: round(v, 3) for k, v in d.items()
                                  if k in ("seg", "unlabelled", "confident_fraction", "pseudo_foreground")}, flush=True)

    def held_out(model) -> float:
        return float(np.mean([dice(predict_labels(model, data[n][1], data[n][2], prompts.embs,
                                                  prompts.laterality)[0] > 0, data[n][0]) for n in val]))

    print(f"RESULT {a.method} {' '.join(a.set)} steps {a.steps} student {held_out(tr.model):.4f} teacher {held_out(tr.teacher):.4f} "
          f"train_seconds {time.time() - t0:.0f}", flush=True)


if __name__ == "__main__":
    main()
