"""Prompt -> mask p50 of the default model on the cached 512² latency image, in one process: for
A/B runs of two versions of the code (put the other version's src/ first on PYTHONPATH and
alternate the two; docs/benchmarks.md, "One prompt per tile").

usage: python scripts/prompt_ab.py [--runs 40]   (prints the promptseg path it ran and p50/p95)
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=40)
    a = ap.parse_args()
    import promptseg
    from promptseg.bench.latency import bench_image
    from promptseg.predictor import Predictor

    p = Predictor.load(None)
    p.set_image(bench_image(512))
    for _ in range(5):
        p.predict("nucleus")
    ms = []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        p.predict("nucleus")
        ms.append((time.perf_counter() - t0) * 1e3)
    print(promptseg.__file__, f"p50 {np.median(ms):.1f} p95 {np.percentile(ms, 95):.1f} ms")


if __name__ == "__main__":
    main()
