"""`promptseg bench latency`: image embedding and prompt->mask latency of the Predictor.

Warm-up, then percentiles over repeated runs (CUDA synchronised). The embedding is timed
with the Predictor's cache cleared each run; a prompt is timed on the cached embedding.
"""
from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np
import torch

from ..io import load_sample
from ..project import atomic_write_json


def bench_image(size: int) -> np.ndarray:
    """A real image of size x size: the nuclei sample's four tiles reassembled (512²), then
    tiled or cropped to the requested size."""
    t = [it.image for it in load_sample("nuclei").items]
    full = np.block([[t[0], t[1]], [t[2], t[3]]])
    reps = -(-size // full.shape[0])
    return np.tile(full, (reps, reps))[:size, :size]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _pct(xs: list[float]) -> tuple[float, float]:
    return float(np.percentile(xs, 50)), float(np.percentile(xs, 95))


def run_latency(device: str = "cpu", size: int = 512, runs: int = 20, embed_runs: int | None = None,
                prompt: str = "nucleus", out: str | Path | None = None, log=print) -> dict:
    from ..predictor import Predictor

    img = bench_image(size)
    t0 = time.perf_counter()
    p = Predictor.load(None, device=device)
    load_s = time.perf_counter() - t0
    p.text.encode([prompt])  # the text encoder is loaded once per session, not per prompt
    _sync(device)
    t0 = time.perf_counter()
    p.set_image(img)
    p.predict(prompt)
    _sync(device)
    first_ms = (time.perf_counter() - t0) * 1e3
    embed_ms, prompt_ms = [], []
    for _ in range(embed_runs or runs):
        p._cache.clear()
        _sync(device)
        t0 = time.perf_counter()
        p.set_image(img)
        _sync(device)
        embed_ms.append((time.perf_counter() - t0) * 1e3)
    p.predict(prompt)  # warm-up on the cached embedding
    for _ in range(runs):
        _sync(device)
        t0 = time.perf_counter()
        p.predict(prompt)
        _sync(device)
        prompt_ms.append((time.perf_counter() - t0) * 1e3)
    e50, e95 = _pct(embed_ms)
    p50, p95 = _pct(prompt_ms)
    res = {
        "device": device, "device_name": torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(), "size": size, "tiles": p._current.grid.n_tiles,
        "runs": runs, "embed_runs": embed_runs or runs, "model_load_s": round(load_s, 2),
        "embed_dtype": "float32",
        "first_set_image_plus_predict_ms": round(first_ms, 1),
        "embed_ms_p50": round(e50, 1), "embed_ms_p95": round(e95, 1),
        "prompt_ms_p50": round(p50, 1), "prompt_ms_p95": round(p95, 1),
        "speedup_cached_prompt_vs_first": round(first_ms / p50, 1), "model": p.info["version"],
        "torch": torch.__version__,
    }
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(out) / "latency.json", res)
    log(" ".join(f"{k}={v}" for k, v in res.items()))
    return res
