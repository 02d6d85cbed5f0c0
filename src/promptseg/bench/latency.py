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
from ..training.evaluate import dice


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


def _use_reference(p, reference: bool) -> None:
    """Switch a float32 Predictor's encoder between its fast inference copy (default) and the
    reference, the package's TinyViT module (SAM's decoder layout lives in the tests only)."""
    if hasattr(p.model.backbone, "fast_inference"):
        p.model.backbone.fast_inference = not reference


def run_latency(device: str = "cpu", size: int = 512, runs: int = 20, embed_runs: int | None = None,
                prompt: str = "nucleus", out: str | Path | None = None, reference: bool = True,
                encoder_precision: str = "float32", decoder_precision: str = "float32", log=print) -> dict:
    """``reference``: also time the reference encoder (the package's TinyViT module) in the same
    run, interleaved run by run with the fast ones, and report the speed-ups and the Dice between the two paths' masks. A reduced ``encoder_precision``
    (bfloat16 on a CPU, float16 CUDA graphs) or ``decoder_precision`` (bfloat16 on a CPU) is
    the timed Predictor's; a float32 Predictor's fast paths are then timed in the same run too,
    and the reference is float32."""
    from ..inference.predictor import Predictor

    img = bench_image(size)
    t0 = time.perf_counter()
    p = Predictor.load(None, device=device, encoder_precision=encoder_precision, decoder_precision=decoder_precision)
    load_s = time.perf_counter() - t0
    reduced = (encoder_precision, decoder_precision) != ("float32", "float32")
    p32 = Predictor.load(None, device=device) if reduced else p
    preds = {"fast": p, "float32": p32, "reference": p32}
    modes = ("fast",) + (("float32",) if reduced else ()) + (("reference",) if reference else ())
    p.text.encode([prompt])  # the text encoder is loaded once per session, not per prompt
    p32.text.encode([prompt])
    _sync(device)
    t0 = time.perf_counter()
    p.set_image(img)
    p.predict(prompt)
    _sync(device)
    first_ms = (time.perf_counter() - t0) * 1e3
    embed_ms = {m: [] for m in modes}
    prompt_ms = {m: [] for m in modes}
    labels = {}

    def timed(fn) -> float:
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        return (time.perf_counter() - t0) * 1e3

    for i in range(embed_runs or runs):
        for m in (modes if i % 2 == 0 else modes[::-1]):   # alternate the order: fair under drift
            q = preds[m]
            _use_reference(q, m == "reference")
            q._cache.clear()
            embed_ms[m].append(timed(lambda: q.set_image(img)))
            labels[m] = q.predict(prompt).labels > 0
            q.predict(prompt)  # warm-up on the cached embedding
            prompt_ms[m].extend(timed(lambda: q.predict(prompt)) for _ in range(-(-runs // (embed_runs or runs))))
    _use_reference(p32, False)
    e50, e95 = _pct(embed_ms["fast"])
    p50, p95 = _pct(prompt_ms["fast"])
    res = {
        "device": device, "device_name": torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(), "size": size, "tiles": p._current.grid.n_tiles,
        "runs": len(prompt_ms["fast"]), "embed_runs": embed_runs or runs, "model_load_s": round(load_s, 2),
        "embed_dtype": encoder_precision, "decoder_dtype": decoder_precision,
        "first_set_image_plus_predict_ms": round(first_ms, 1),
        "embed_ms_p50": round(e50, 1), "embed_ms_p95": round(e95, 1),
        "prompt_ms_p50": round(p50, 1), "prompt_ms_p95": round(p95, 1),
        "speedup_cached_prompt_vs_first": round(first_ms / p50, 1), "model": p.info["version"],
        "torch": torch.__version__,
    }
    for m in modes[1:]:
        m_e50, m_e95 = _pct(embed_ms[m])
        m_p50, m_p95 = _pct(prompt_ms[m])
        res.update({
            f"{m}_embed_ms_p50": round(m_e50, 1), f"{m}_embed_ms_p95": round(m_e95, 1),
            f"{m}_prompt_ms_p50": round(m_p50, 1), f"{m}_prompt_ms_p95": round(m_p95, 1),
            f"embed_speedup_vs_{m}": round(m_e50 / e50, 2),
            f"prompt_speedup_vs_{m}": round(m_p50 / p50, 2),
            f"mask_dice_vs_{m}": round(dice(labels["fast"], labels[m]), 4),
        })
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(out) / "latency.json", res)
    log(" ".join(f"{k}={v}" for k, v in res.items()))
    return res
