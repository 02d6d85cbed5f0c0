"""Check a Predictor's reduced-precision encoder against float32 (docs/benchmarks.md, "Encoder precision").

On ``--device cuda`` it checks ``--precision float16`` (CUDA graphs; or float16-compiled), on the
CPU ``bfloat16``.
1. Accuracy: the default model's 'nucleus' masks on the real images of ``--data`` (a MoNuSeg-
   format folder; default: its val rows) and the bundled nuclei sample, Dice against the ground
   truth for both precisions, and the mask Dice between them.
2. Shapes and dtypes: images of 1, 4 and 9 tiles (graphs of 1 and 4 tiles, and a 4+4+1 split),
   8-bit, 16-bit and float input: the largest embedding difference and set_image p50 of both.
3. Threads: two threads embedding different images through one shared reduced-precision
   encoder at once must each get the single-thread embedding.
usage: python scripts/encoder_precision_check.py OUT_DIR [--device cpu|cuda] [--precision P] [--data DIR] [--runs 5]
"""
from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import numpy as np
import torch


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / max(1, int(a.sum() + b.sum()))


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Dice between two precisions' masks; two empty masks agree fully."""
    return 1.0 if not (a.any() or b.any()) else dice(a, b)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--data", default=None, help="MoNuSeg-format folder (images/, masks/, captions.csv)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--precision", default=None, help="default: float16 on CUDA, bfloat16 on the CPU")
    a = ap.parse_args()
    from promptseg.bench.data import load_seg_dir
    from promptseg.bench.latency import bench_image
    from promptseg.io import load_sample
    from promptseg.inference.predictor import Predictor

    dev = a.device
    prec = a.precision or ("float16" if dev.startswith("cuda") else "bfloat16")
    p32 = Predictor.load(None, device=dev)
    plo = Predictor.load(None, device=dev, encoder_precision=prec)
    res: dict = {"device": torch.cuda.get_device_name() if dev.startswith("cuda") else "cpu",
                 "cpu_threads": torch.get_num_threads(), "torch": torch.__version__, "precision": prec,
                 "accuracy": {}, "shapes": {}}
    # 1. accuracy on real images with ground truth
    rows = [(f"nuclei_{i}", it.image, it.mask > 0) for i, it in enumerate(load_sample("nuclei").items)]
    if a.data:
        rows += [(r.name, r.image, r.mask > 0) for r in load_seg_dir(a.data) if r.split == a.split]
    for name, img, gt in rows:
        m = {}
        for tag, p in (("float32", p32), (prec, plo)):
            p.set_image(img)
            m[tag] = p.predict("nucleus").labels > 0
        row = {"dice_gt_float32": round(100 * dice(m["float32"], gt), 2), f"dice_gt_{prec}": round(100 * dice(m[prec], gt), 2),
               "mask_dice_between": round(agreement(m["float32"], m[prec]), 4)}
        res["accuracy"][name] = row
        print(name, row, flush=True)
    acc = res["accuracy"].values()
    res["accuracy_mean"] = {k: round(float(np.mean([r[k] for r in acc])), 4) for k in next(iter(acc))}
    print("mean", res["accuracy_mean"], flush=True)
    # 2. tile counts and input dtypes
    base = bench_image(768)
    images = {"256_u8": base[:256, :256], "512_u8": base[:512, :512], "700_u8": base[:700, :700],
              "512_u16": base[:512, :512].astype(np.uint16) * 257, "512_f32": base[:512, :512].astype(np.float32) / 7}
    for name, img in images.items():
        row = {}
        for tag, p in (("float32", p32), (prec, plo)):
            ms = []
            for _ in range(a.runs + 1):
                p._cache.clear()
                sync(dev)
                t0 = time.perf_counter()
                p.set_image(img)
                sync(dev)
                ms.append((time.perf_counter() - t0) * 1e3)
            row[f"set_image_ms_p50_{tag}"] = round(float(np.median(ms[1:])), 1)
        e32, elo = p32._current.emb.float(), plo._current.emb.float()
        row.update(tiles=plo._current.grid.n_tiles, emb_max_abs_diff=round(float((e32 - elo).abs().max()), 4),
                   emb_mean_abs_diff=round(float((e32 - elo).abs().mean()), 5), emb_abs_max=round(float(e32.abs().max()), 3))
        res["shapes"][name] = row
        print(name, row, flush=True)
    # 3. two threads through one shared encoder
    pair = {"a": images["512_u8"], "b": images["700_u8"]}
    want = {}
    for k, img in pair.items():
        plo._cache.clear()
        plo.set_image(img)
        want[k] = plo._current.emb.clone()
    got, lock = {}, threading.Lock()

    def work(k: str, img: np.ndarray) -> None:
        for _ in range(3):
            q = Predictor(plo.model, device=dev, config=plo.config)
            q._encoder = plo._encoder   # the shared encoder under test
            q.set_image(img)
            with lock:
                got.setdefault(k, []).append(float((q._current.emb - want[k]).abs().max()))

    ts = [threading.Thread(target=work, args=kv) for kv in pair.items()]
    [t.start() for t in ts]
    [t.join() for t in ts]
    res["threads_max_abs_diff"] = {k: max(v) for k, v in got.items()}
    print("threads", res["threads_max_abs_diff"], flush=True)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "encoder_precision_check.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
