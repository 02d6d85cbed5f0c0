"""Where a float16 Predictor's ``set_image`` spends its time on a GPU, stage by stage, and what
the remaining stages cost in faster forms (docs/benchmarks.md, "GPU embedding").

Stages of ``Predictor.set_image`` on the 512² latency image (4 tiles), each synchronised, median
of N runs: the content hash (cache key), the tiles on the device (8-bit scaled there), the
float16 CUDA-graph encoder, the cast to float32 + channels-last, and the pixel branch (quantise,
float32 convolutions, cast to float16). Then candidates for the slow stages: the pixel branch
under float16 autocast and as a float16 CUDA graph; the encoder compiled by inductor (default mode, float16,
fused elementwise kernels) and then captured as a CUDA graph, with its compile time and the
largest embedding difference from the float16 graph.

usage: python scripts/gpu_set_image_profile.py OUT_DIR [--runs 50] [--compile]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from gpu_embed_profile import median_runs, sync   # scripts/ is on the path when run as a script


def ms_runs(fn, runs: int) -> dict:
    ms = median_runs(fn, runs, warmup=3)
    return {"p50": round(float(np.median(ms)), 3), "p95": round(float(np.percentile(ms, 95)), 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--compile", action="store_true")
    a = ap.parse_args()
    from promptseg.bench.latency import bench_image
    from promptseg.inference.embeddings import embed_tiles, image_tiles, quantise_tiles
    from promptseg.fsutil import array_sha256
    from promptseg.model.backbones.reduced_precision import GraphedEncoder
    from promptseg.inference.predictor import Predictor

    dev = "cuda"
    img = bench_image(512)
    p = Predictor.load(None, device=dev, encoder_precision="float16")
    model, enc = p.model, p._encoder
    res: dict = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "runs": a.runs,
                 "pixel_branch": model.pixel_branch is not None}
    with torch.no_grad():
        def whole():
            p._cache.clear()
            p.set_image(img)
        res["set_image"] = ms_runs(whole, a.runs)
        res["hash"] = ms_runs(lambda: array_sha256(img), a.runs)
        res["tiles"] = ms_runs(lambda: image_tiles(img, model.tile, dev), a.runs)
        x, _ = image_tiles(img, model.tile, dev)
        res["encoder_graph"] = ms_runs(lambda: enc(x), a.runs)
        res["embed_tiles"] = ms_runs(lambda: embed_tiles(model, x, dev, encoder=enc), a.runs)
        emb = embed_tiles(model, x, dev, encoder=enc)
        res["channels_last"] = ms_runs(lambda: emb.contiguous(memory_format=torch.channels_last), a.runs)
        pb = model.pixel_branch
        if pb is not None:
            q = quantise_tiles(x)
            ref = model.fine_features(q).half()
            res["pixel_branch_fp32"] = ms_runs(lambda: model.fine_features(quantise_tiles(x)).half(), a.runs)

            def pb_autocast():
                with torch.autocast("cuda", dtype=torch.float16):
                    return model.fine_features(quantise_tiles(x)).half()
            res["pixel_branch_autocast_fp16"] = ms_runs(pb_autocast, a.runs)
            res["pixel_branch_autocast_fp16_maxdiff"] = float((pb_autocast().float() - ref.float()).abs().max())
            with torch.autocast("cuda", dtype=torch.float16, cache_enabled=False):
                g = GraphedEncoder(lambda t: pb((t * 255.0).round_().clamp_(0, 255) / 255.0), x.shape[0],
                                   model.tile, dev)
            res["pixel_branch_graph_fp16"] = ms_runs(lambda: g(x), a.runs)
            res["pixel_branch_graph_fp16_maxdiff"] = float((g(x).float() - ref.float()).abs().max())
            res["fine_abs_max"] = float(ref.float().abs().max())
        print(json.dumps(res, indent=1), flush=True)
        if a.compile:
            base = enc(x).float()
            t0 = time.time()
            compiled = torch.compile(model.backbone, dynamic=False)
            with torch.autocast("cuda", dtype=torch.float16, cache_enabled=False):
                compiled(x)
                sync()
                res["compile_s"] = round(time.time() - t0, 1)
                cg = GraphedEncoder(compiled, x.shape[0], model.tile, dev)
            res["encoder_compiled_graph_fp16"] = ms_runs(lambda: cg(x), a.runs)
            res["encoder_compiled_graph_maxdiff"] = float((cg(x).float() - base).abs().max())
            res["embedding_abs_max"] = float(base.abs().max())
    print(json.dumps(res, indent=1))
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "set_image_profile.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
