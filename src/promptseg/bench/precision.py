"""`promptseg bench precision`: a Predictor's reduced-precision encoder against float32.

1. Accuracy: the default model's 'nucleus' masks on the bundled nuclei tiles and, with
   ``data``, a MoNuSeg-format folder's rows of one split; Dice against the ground truth for
   both precisions, and the mask Dice between them.
2. Shapes and input types: images of 1, 4 and 9 tiles, 8-bit, 16-bit and float input; the
   largest embedding difference and the set_image p50 of both.
3. Threads: two threads embedding different images through one shared encoder must each get
   the single-thread embedding.
Results go to ``OUT/encoder_precision_check.json`` (docs/benchmarks.md, "Encoder precision").
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import torch

from ..project import atomic_write_json
from ..training.evaluate import dice   # two empty masks agree fully
from .latency import bench_image


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _accuracy(rows: list, predictors: dict, prec: str) -> dict:
    out = {}
    for name, img, gt in rows:
        masks = {}
        for tag, p in predictors.items():
            p.set_image(img)
            masks[tag] = p.predict("nucleus").labels > 0
        out[name] = {"dice_gt_float32": round(100 * dice(masks["float32"], gt), 2),
                     f"dice_gt_{prec}": round(100 * dice(masks[prec], gt), 2),
                     "mask_dice_between": round(dice(masks["float32"], masks[prec]), 4)}
        print(name, out[name], flush=True)
    return out


def _shapes(images: dict, predictors: dict, prec: str, runs: int, device: str) -> dict:
    out = {}
    for name, img in images.items():
        row = {}
        for tag, p in predictors.items():
            ms = []
            for _ in range(runs + 1):
                p._cache.clear()
                _sync(device)
                t0 = time.perf_counter()
                p.set_image(img)
                _sync(device)
                ms.append((time.perf_counter() - t0) * 1e3)
            row[f"set_image_ms_p50_{tag}"] = round(float(np.median(ms[1:])), 1)
        e32, elo = predictors["float32"]._current.emb.float(), predictors[prec]._current.emb.float()
        row.update(tiles=predictors[prec]._current.grid.n_tiles,
                   emb_max_abs_diff=round(float((e32 - elo).abs().max()), 4),
                   emb_mean_abs_diff=round(float((e32 - elo).abs().mean()), 5),
                   emb_abs_max=round(float(e32.abs().max()), 3))
        out[name] = row
        print(name, row, flush=True)
    return out


def _threads(pair: dict, plo, device: str, repeats: int = 3) -> dict:
    """Largest embedding difference of two threads sharing ``plo``'s encoder from their
    single-thread embeddings (0.0 when the shared encoder is thread-safe)."""
    from ..inference.predictor import Predictor

    want = {}
    for k, img in pair.items():
        plo._cache.clear()
        plo.set_image(img)
        want[k] = plo._current.emb.clone()
    got: dict[str, list[float]] = {}
    lock = threading.Lock()

    def work(k: str, img: np.ndarray) -> None:
        for _ in range(repeats):
            q = Predictor(plo.model, device=device, config=plo.config)
            q._encoder = plo._encoder   # the shared encoder under test
            q.set_image(img)
            with lock:
                got.setdefault(k, []).append(float((q._current.emb - want[k]).abs().max()))

    ts = [threading.Thread(target=work, args=kv) for kv in pair.items()]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return {k: max(v) for k, v in got.items()}


def run_precision(out: str | Path, device: str = "cpu", precision: str | None = None, data: str | None = None,
                  split: str = "val", runs: int = 5, quick: bool = False) -> dict:
    """Run the three checks and write ``out/encoder_precision_check.json``. ``precision``
    defaults to float16 on CUDA and bfloat16 on the CPU; ``quick``: one nuclei tile, one
    16-bit one-tile image and fewer thread repeats, for a smoke run."""
    from ..inference.predictor import Predictor
    from ..io import load_sample
    from .data import load_seg_dir

    prec = precision or ("float16" if device.startswith("cuda") else "bfloat16")
    p32 = Predictor.load(None, device=device)
    plo = Predictor.load(None, device=device, encoder_precision=prec)
    tag = prec if prec != "float32" else "float32_again"   # float32 against itself: a smoke check
    predictors = {"float32": p32, tag: plo}
    res: dict = {"device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
                 "cpu_threads": torch.get_num_threads(), "torch": torch.__version__, "precision": prec}
    items = load_sample("nuclei").items[: 1 if quick else None]
    rows = [(f"nuclei_{i}", it.image, it.mask > 0) for i, it in enumerate(items)]
    if data:
        rows += [(r.name, r.image, r.mask > 0) for r in load_seg_dir(data) if r.split == split]
    res["accuracy"] = _accuracy(rows, predictors, tag)
    acc = list(res["accuracy"].values())
    res["accuracy_mean"] = {k: round(float(np.mean([r[k] for r in acc])), 4) for k in acc[0]}
    print("mean", res["accuracy_mean"], flush=True)
    base = bench_image(768)
    images = {"256_u8": base[:256, :256], "512_u8": base[:512, :512], "700_u8": base[:700, :700],
              "512_u16": base[:512, :512].astype(np.uint16) * 257, "512_f32": base[:512, :512].astype(np.float32) / 7}
    if quick:
        images = {"256_u16": base[:256, :256].astype(np.uint16) * 257}
    res["shapes"] = _shapes(images, predictors, tag, runs, device)
    pair = ({"a": base[:256, :256], "b": base[256:512, 256:512]} if quick
            else {"a": images["512_u8"], "b": images["700_u8"]})
    res["threads_max_abs_diff"] = _threads(pair, plo, device, repeats=2 if quick else 3)
    print("threads", res["threads_max_abs_diff"], flush=True)
    Path(out).mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(out) / "encoder_precision_check.json", res)
    return res
