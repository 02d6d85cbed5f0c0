"""Time the AAL --quick flow floor with fresh flows and with the flows a run keeps
(docs/benchmarks.md, "Following the anatomy"): the bench computes them once per run.

usage: OMP_NUM_THREADS=1 python scripts/aal_flow_reuse.py
"""
from __future__ import annotations

import time

import numpy as np

from promptseg.bench.aal import AALConfig, flow_slice_labels, load_volumes, slices, spread_indices


def main() -> None:
    cfg = AALConfig.quick_defaults()
    t1, labels, classes = load_volumes(cfg.templates)
    rows = slices(t1, labels, cfg.plane, cfg.slice_step)
    lab = spread_indices(len(rows), max(2, int(round(cfg.labelled * len(rows)))))
    flows: dict = {}
    t = time.time()
    a = flow_slice_labels(rows, lab, classes, flows)
    fresh = time.time() - t
    t = time.time()
    b = flow_slice_labels(rows, lab, classes, flows)
    kept = time.time() - t
    same = all(np.array_equal(a[i], b[i]) for i in a)
    print(f"{len(rows)} slices, {len(lab)} labelled, {len(flows)} flows: fresh {fresh:.1f} s, kept {kept:.1f} s, "
          f"ratio {fresh / kept:.1f}x, identical labels {same}")


if __name__ == "__main__":
    main()
