"""Where the GPU embedding time goes, and what removes it (docs/benchmarks.md, "GPU embedding").

Times the default model's TinyViT on the 4 tiles of the 512² latency image in several ways,
in one process on one GPU: the package module in float32, the Predictor's fast eval path
(folded BatchNorm, channels-last) in float32, with TF32 matmuls, under float16 and bfloat16
autocast, CUDA-graph replays (model/backbones/reduced_precision.py) of it in float32 and float16, and
optionally torch.compile. For each: median and p95 over N runs (synchronised), the largest difference
from the package float32 embedding and the Dice of the 'nucleus' mask decoded from it against
the package float32 mask. Then a torch.profiler summary of one eager pass: kernel count, GPU
busy time vs wall time (a GPU idle between launches = launch-bound).

usage: python scripts/gpu_embed_profile.py OUT_DIR [--runs 50] [--compile] [--device cpu (a dry run:
eager variants only)]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def median_runs(fn, runs: int, warmup: int = 1) -> list[float]:
    """Milliseconds of ``runs`` synchronised calls of ``fn()`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync()
    ms = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        sync()
        ms.append((time.perf_counter() - t0) * 1e3)
    return ms


def timed(fn, x, runs: int) -> tuple[list[float], torch.Tensor]:
    ms = median_runs(lambda: fn(x), runs, warmup=min(5, runs))
    return ms, fn(x).float()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--device", default="cuda")
    a = ap.parse_args()
    from promptseg.bench.latency import bench_image
    from promptseg.io.normalise import prepare_image
    from promptseg.io.tiling import extract_tiles
    from promptseg.model.backbones.reduced_precision import GraphedEncoder
    from promptseg.inference.predictor import Predictor

    dev = a.device
    img = bench_image(512)
    p = Predictor.load(None, device=dev)
    p.set_image(img)
    base = p._current
    ref_labels = None   # the package float32 variant's mask (the first variant)
    enc = p.model.backbone
    tiles, _ = extract_tiles(prepare_image(img), p.model.tile)
    x = torch.from_numpy(tiles).permute(0, 3, 1, 2).contiguous().to(dev)

    def autocast(fn, dtype):
        def run(t):
            with torch.autocast("cuda", dtype=dtype):
                return fn(t)
        return run

    def tf32(fn):
        def run(t):
            torch.backends.cuda.matmul.allow_tf32 = True
            try:
                return fn(t)
            finally:
                torch.backends.cuda.matmul.allow_tf32 = False
        return run

    def package(t):   # the package's TinyViT module (no folded BatchNorm, no channels-last copy)
        enc.fast_inference = False
        try:
            return enc(t)
        finally:
            enc.fast_inference = True

    # "fast": the Predictor's eval-mode path (model/backbones/tinyvit_inference.py)
    variants = {"package_fp32": package, "fast_fp32": enc, "fast_tf32": tf32(enc),
                "fast_fp16": autocast(enc, torch.float16), "fast_bf16": autocast(enc, torch.bfloat16)}
    if dev.startswith("cuda"):
        with torch.no_grad():
            variants["graph_fast_fp32"] = GraphedEncoder(enc, 4, p.model.tile, dev)
            # no autocast weight cache: cached half weights would be freed under the graph
            with torch.autocast("cuda", dtype=torch.float16, cache_enabled=False):
                variants["graph_fast_fp16"] = GraphedEncoder(enc, 4, p.model.tile, dev)
    if a.compile:
        t0 = time.time()
        variants["compile_reduce_overhead"] = torch.compile(enc, mode="reduce-overhead")
        print(f"compile wrapper built in {time.time() - t0:.1f} s (compiles on first call)")
    res: dict = {"device": torch.cuda.get_device_name() if dev.startswith("cuda") else "cpu", "torch": torch.__version__, "runs": a.runs, "variants": {}}
    ref = None
    for name, fn in variants.items():
        t0 = time.time()
        with torch.no_grad():
            ms, emb = timed(fn, x, a.runs)
        ref = emb if ref is None else ref
        p._current = dataclasses.replace(base, emb=emb, pix=None)
        lab = p.predict("nucleus").labels
        ref_labels = lab if ref_labels is None else ref_labels
        inter = float(((lab > 0) & (ref_labels > 0)).sum())
        dice = 2 * inter / max(1.0, float((lab > 0).sum() + (ref_labels > 0).sum()))
        res["variants"][name] = {"ms_p50": round(float(np.percentile(ms, 50)), 2),
                                 "ms_p95": round(float(np.percentile(ms, 95)), 2),
                                 "max_abs_diff": float((emb - ref).abs().max()),
                                 "ref_abs_max": float(ref.abs().max()),
                                 "mask_dice_vs_package_fp32": round(dice, 4), "wall_s": round(time.time() - t0, 1)}
        print(name, res["variants"][name], flush=True)
    # the Predictor's whole set_image (normalise, hash, tile, encode), then its host side alone
    from promptseg.fsutil import array_sha256

    q = Predictor.load(None, device=dev)

    def set_image() -> None:
        q._cache.clear()
        q.set_image(img)

    def host_side() -> None:
        array_sha256(img)
        t, _ = extract_tiles(prepare_image(img), p.model.tile)
        torch.from_numpy(t).permute(0, 3, 1, 2).contiguous().to(dev)

    for key, fn in (("set_image_eager_ms_p50", set_image), ("host_side_ms_p50", host_side)):
        res[key] = round(float(np.percentile(median_runs(fn, a.runs), 50)), 2)
        print(key, res[key], flush=True)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "embed_variants.json").write_text(json.dumps(res, indent=1))
    try:
        profile_pass(enc, x, res, a.out)
    except Exception as exc:  # noqa: BLE001 - the timings above are already written
        print(f"profiler failed: {exc!r}")
    (Path(a.out) / "embed_variants.json").write_text(json.dumps(res, indent=1))


def profile_pass(enc, x, res: dict, out: str) -> None:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])

    with torch.no_grad(), profile(activities=activities) as prof:
        for _ in range(5):
            enc(x)
        sync()
    ev = prof.key_averages()
    # kernels: the device-side events of the trace (one per launch)
    dev_events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    gpu_us = sum(e.device_time_total for e in dev_events) if dev_events else 0.0
    cpu_us = sum(e.self_cpu_time_total for e in ev)
    res["profile_fast_fp32"] = {"kernels_per_pass": len(dev_events) / 5, "gpu_busy_ms_per_pass": round(gpu_us / 5e3, 2),
                                 "cpu_self_ms_per_pass": round(cpu_us / 5e3, 2)}
    table = ev.table(sort_by="self_device_time_total" if dev_events else "self_cpu_time_total", row_limit=20)
    (Path(out) / "embed_profile.txt").write_text(table)
    print(json.dumps(res["profile_fast_fp32"]))
    print(table[:4000])


if __name__ == "__main__":
    main()
