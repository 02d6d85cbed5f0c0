"""Prompt -> mask (or, with --embed, set_image) p50 of the default model on the 512² latency
image, in one process: for A/B runs of two versions of the code (put the other version's src/
first on PYTHONPATH and alternate the two; docs/benchmarks.md, "One prompt per tile").

usage: python scripts/latency_ab.py [--runs 40] [--embed]   (prints the promptseg path it ran and p50/p95)
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--embed", action="store_true", help="time set_image (cache cleared) instead of predict")
    a = ap.parse_args()
    import promptseg
    from promptseg.bench.latency import bench_image
    from promptseg.inference.predictor import Predictor

    p = Predictor.load(None)
    img = bench_image(512)
    p.set_image(img)

    def embed() -> None:
        p._cache.clear()
        p.set_image(img)

    fn = embed if a.embed else (lambda: p.predict("nucleus"))
    for _ in range(1 if a.embed else 5):
        fn()
    ms = []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t0) * 1e3)
    print(promptseg.__file__, f"p50 {np.median(ms):.1f} p95 {np.percentile(ms, 95):.1f} ms")


if __name__ == "__main__":
    main()
