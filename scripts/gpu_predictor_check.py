"""Check the Predictor's float16 CUDA-graph encoder against float32 on a GPU (docs/benchmarks.md).

For images of 1, 4 and 9 tiles (so graphs of 1 and 4 tiles, and a 4+4+1 split), and for 8-bit,
16-bit and float inputs: the largest embedding difference, the 'nucleus' mask Dice against the
float32 Predictor, and set_image p50 of both; then two threads embedding different images on one
float16 Predictor at once must give each image's single-thread embedding.
usage: python scripts/gpu_predictor_check.py OUT_DIR [--runs 20]
"""
from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--runs", type=int, default=20)
    a = ap.parse_args()
    from promptseg.bench.latency import bench_image
    from promptseg.predictor import Predictor

    p32 = Predictor.load(None, device="cuda")
    p16 = Predictor.load(None, device="cuda", encoder_precision="float16")
    base = bench_image(768)
    images = {"256_u8": base[:256, :256], "512_u8": base[:512, :512], "700_u8": base[:700, :700],
              "512_u16": base[:512, :512].astype(np.uint16) * 257, "512_f32": base[:512, :512].astype(np.float32) / 7}
    res: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "images": {}}
    for name, img in images.items():
        row = {}
        for tag, p in (("fp32", p32), ("fp16", p16)):
            ms = []
            for _ in range(a.runs + 2):
                p._cache.clear()
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                p.set_image(img)
                torch.cuda.synchronize()
                ms.append((time.perf_counter() - t0) * 1e3)
            row[f"set_image_ms_p50_{tag}"] = round(float(np.median(ms[2:])), 2)
        e32, e16 = p32._current.emb.float(), p16._current.emb.float()
        m32, m16 = p32.predict("nucleus").labels > 0, p16.predict("nucleus").labels > 0
        row["tiles"] = p16._current.grid.n_tiles
        row["emb_max_abs_diff"] = float((e32 - e16).abs().max())
        row["emb_abs_max"] = float(e32.abs().max())
        row["mask_dice_fp16_vs_fp32"] = round(2 * float((m32 & m16).sum()) / max(1, int(m32.sum() + m16.sum())), 4)
        res["images"][name] = row
        print(name, row, flush=True)
    # threads: one float16 Predictor, two images at once (the GUI's background embedding does this)
    a_img, b_img = images["512_u8"], images["700_u8"]
    want = {}
    for k, img in (("a", a_img), ("b", b_img)):
        p16._cache.clear()
        p16.set_image(img)
        want[k] = p16._current.emb.clone()
    got, lock = {}, threading.Lock()

    def work(k, img):
        for _ in range(5):
            q = Predictor(p16.model, device="cuda", config=p16.config)
            q._encoder = p16._encoder   # the shared graph encoder under test
            q.set_image(img)
            with lock:
                got.setdefault(k, []).append(float((q._current.emb - want[k]).abs().max()))

    ts = [threading.Thread(target=work, args=kv) for kv in (("a", a_img), ("b", b_img))]
    [t.start() for t in ts]
    [t.join() for t in ts]
    res["threads_max_abs_diff"] = {k: max(v) for k, v in got.items()}
    print("threads", res["threads_max_abs_diff"], flush=True)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "predictor_check.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
