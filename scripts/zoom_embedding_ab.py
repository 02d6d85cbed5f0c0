"""A box zoom view's embedding at several input sides and thread counts, back to back in one
process (each variant timed on the same crop, in turn), on the zoom crops of a `bench prompts`
dev set's gold boxes.

    python scripts/zoom_embedding_ab.py DEV_DIR OUT.json [--sides 256,224,192] [--threads 2,1] [--repeats 2]

Prints and writes the p50 per variant, its ratio to the first side at the same thread count,
and the load average over the run. The first crop of the first pass is a warm-up, not timed.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from promptseg.bench.prompt_data import load_pair, read_targets
from promptseg.bench.prompts import gold_box
from promptseg.bench.report import run_environment
from promptseg.inference.spatial import BOX_MARGIN, SpatialSegmenter, box_rect


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--sides", default="256,224,192")
    ap.add_argument("--threads", default="2,1")
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    sides = [int(s) for s in a.sides.split(",")]
    threads = [int(t) for t in a.threads.split(",")]
    seg = SpatialSegmenter()
    targets = read_targets(a.data)
    times: dict[tuple[int, int], list[float]] = {(t, s): [] for t in threads for s in sides}
    loads = []
    for rep in range(a.repeats):
        for i, target in enumerate(targets):
            img, gt = load_pair(a.data, target)
            seg.set_image(img)
            rect = box_rect(gold_box(gt), seg.shape, BOX_MARGIN)
            for t in threads:
                torch.set_num_threads(t)
                for s in sides:
                    seg._cache.clear()   # every call embeds
                    started = time.perf_counter()
                    seg.view(rect, s)
                    if rep or i:
                        times[(t, s)].append(time.perf_counter() - started)
            loads.append(os.getloadavg()[0])
    p50 = {f"{t} threads, side {s}": 1000 * float(np.median(v)) for (t, s), v in times.items()}
    result = {"p50_ms": p50,
              "ratio_to_first_side": {f"{t} threads, side {s}": p50[f"{t} threads, side {s}"]
                                      / p50[f"{t} threads, side {sides[0]}"] for t, s in times},
              "n": len(next(iter(times.values()))), "load_average": {"min": min(loads), "max": max(loads)},
              "env": run_environment("cpu")}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("p50_ms", "ratio_to_first_side", "load_average")}, indent=1))


if __name__ == "__main__":
    main()
