"""Does bf16 autocast on a CPU change the proposals? Embeds the first two bundled nuclei tiles
in fp32 and in bf16, decodes both in fp32 and prints Dice against each other and the truth,
plus the time of one 256² tile embedding either way.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bf16_embedding_check.py
"""
from __future__ import annotations

import time

import torch

from promptseg import Predictor
from promptseg.inference.embeddings import embed_image
from promptseg.training.evaluate import dice
from promptseg.io import load_sample


def main() -> None:
    torch.set_num_threads(1)
    p = Predictor.load(None, device="cpu")
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        for name, ctx in (("fp32", torch.no_grad()), ("bf16", torch.autocast("cpu", dtype=torch.bfloat16))):
            with ctx:
                p.model.embed(x)
                t = time.perf_counter()
                p.model.embed(x)
            print(f"{name}: one 256x256 tile embedding {1000 * (time.perf_counter() - t):.0f} ms")
    for item in load_sample("nuclei").items[:2]:
        p.set_image(item.image)
        r32 = p.predict(["nucleus"])
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            e16, _ = embed_image(p.model, item.image)
        cur = p._need_image()
        cur.emb, cur.pix = e16.float(), None      # the same image, bf16 embedding
        r16 = p.predict(["nucleus"])
        gt = item.mask > 0
        print(f"{item.name}: Dice fp32 vs truth {dice(r32.labels > 0, gt):.4f}, bf16 vs truth "
              f"{dice(r16.labels > 0, gt):.4f}, fp32 vs bf16 {dice(r32.labels > 0, r16.labels > 0):.4f}")


if __name__ == "__main__":
    main()
