"""Issue-3 check on MoNuSeg: SSL methods against supervised training on the same labelled subset.

    .venv/bin/python scripts/ssl_comparison.py --data ../shared/data/monuseg --steps 1500 \
        --methods supervised,mean_teacher,promptseg,promptseg-no_text,promptseg-no_exemplar --out OUT

runs every method in one invocation, one child process each (one torch thread each, side by
side), and writes OUT/ssl_comparison.json and .md; ``--method M`` runs a single method.

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

from promptseg.training.dataset import class_prompts, make_item
from promptseg.inference.embeddings import EmbeddingCache, tile_pixels
from promptseg.inference.decode import predict_labels
from promptseg.training.evaluate import dice
from promptseg.training.ssl import METHODS, SSLTrainer, method_config
from promptseg.training.types import UnlabelledItem
from promptseg.model.segmenter import ModelConfig, PromptSegModel
from promptseg.model.text import TextEncoder


def overrides(pairs: list[str]) -> dict:
    out = {}
    for p in pairs:
        k, v = p.split("=", 1)
        if v.lower() in ("true", "false"):
            out[k] = v.lower() == "true"
        else:
            try:
                out[k] = float(v) if "." in v else int(v)
            except ValueError:
                out[k] = v   # a word, e.g. fusion=veto
    return out


def run_all(a) -> None:
    """One child process per method; collect their RESULT lines into a table."""
    import json
    import os
    import subprocess
    import sys

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = {}
    for m in a.methods.split(","):
        cmd = [sys.executable, __file__, "--data", a.data, "--method", m, "--steps", str(a.steps),
               "--labelled", str(a.labelled), "--cache", a.cache] + (["--set", *a.set] if a.set else [])
        procs[m] = subprocess.Popen(cmd, stdout=open(out / f"{m}.log", "w"), stderr=subprocess.STDOUT, env=env)
    rows = []
    for m, p in procs.items():
        if p.wait() != 0:
            raise SystemExit(f"{m} failed, see {out / (m + '.log')}")
        line = [x for x in open(out / f"{m}.log") if x.startswith("RESULT")][-1].split()
        vals = dict(zip(line[line.index("steps")::2], line[line.index("steps") + 1::2]))
        student, teacher = float(vals["student"]), float(vals["teacher"])
        rows.append({"method": m, "student": student, "teacher": teacher,
                     "round_output": student if m == "supervised" else teacher,
                     "train_seconds": float(vals["train_seconds"])})
    base = next((r["round_output"] for r in rows if r["method"] == "supervised"), None)
    lines = ["| method | held-out Dice (round output) | vs supervised | student | EMA teacher | train s |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        delta = "" if base is None else f"{100 * (r['round_output'] - base):+.2f}"
        lines.append(f"| {r['method']} | {r['round_output']:.4f} | {delta} | {r['student']:.4f} | "
                     f"{r['teacher']:.4f} | {r['train_seconds']:.0f} |")
    (out / "ssl_comparison.md").write_text("\n".join(lines) + "\n")
    (out / "ssl_comparison.json").write_text(json.dumps(
        {"results": rows, "config": {"steps": a.steps, "labelled": a.labelled, "set": a.set}}, indent=1))
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--method", choices=METHODS)
    ap.add_argument("--methods", help="comma-separated methods, each in its own process")
    ap.add_argument("--out", default="ssl_comparison")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--labelled", type=float, default=0.25)
    ap.add_argument("--cache", default="/tmp/monu_cache")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="SSLConfig overrides, e.g. teacher_views=4 w_exemplar=0.5")
    a = ap.parse_args()
    if a.methods:
        return run_all(a)
    if not a.method:
        ap.error("give --method or --methods")
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
        data[n] = (mask, emb, grid, tile_pixels(img, grid.tile))
    lab_names = list(np.random.default_rng(0).choice(train, int(round(a.labelled * len(train))), replace=False))
    lab = [make_item(n, data[n][1], data[n][2], data[n][0].astype(int), ["nucleus"], ["nucleus"], data[n][3])
           for n in lab_names]
    unl = [UnlabelledItem(n, data[n][1], pixels=data[n][3]) for n in train if n not in lab_names]
    prompts = class_prompts(["nucleus"], TextEncoder(base.cfg.text_model))
    tr = SSLTrainer(base, lab, unl, prompts, method_config(a.method, a.steps, **overrides(a.set)))
    t0 = time.time()
    while tr.step_count < a.steps:
        d = tr.step()
        if tr.step_count % 50 == 0:
            print(tr.step_count, {k: round(v, 3) for k, v in d.items()
                                  if k in ("seg", "unlabelled", "confident_fraction", "pseudo_foreground")}, flush=True)

    def held_out(model) -> float:
        return float(np.mean([dice(predict_labels(model, data[n][1], data[n][2], prompts.embs, prompts.laterality,
                                                  pixels=data[n][3])[0] > 0, data[n][0]) for n in val]))

    print(f"RESULT {a.method} {' '.join(a.set)} steps {a.steps} student {held_out(tr.model):.4f} teacher {held_out(tr.teacher):.4f} "
          f"train_seconds {time.time() - t0:.0f}", flush=True)


if __name__ == "__main__":
    main()
