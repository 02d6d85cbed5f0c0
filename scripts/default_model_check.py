"""Dice of a checkpoint's proposals on the bundled nuclei tiles, with the encoder's BatchNorm in
eval mode (what the Predictor does) and in training mode (batch statistics, how embeddings were
computed for training before 2026-11-26). A model is only as good as the first number.

    .venv/bin/python scripts/default_model_check.py [CHECKPOINT_DIR]
"""
from __future__ import annotations

import sys

import numpy as np

from promptseg.training.evaluate import dice
from promptseg.io import load_sample
from promptseg.inference.predictor import Predictor


def nuclei_dice(p: Predictor) -> list[float]:
    out = []
    for it in load_sample("nuclei").items:
        p._cache.clear()
        p.set_image(it.image)
        out.append(dice(p.predict("nucleus").labels > 0, np.asarray(it.mask) > 0))
    return out


def main() -> None:
    p = Predictor.load(sys.argv[1] if len(sys.argv) > 1 else None, device="cpu")
    for mode in ("eval", "train"):
        if mode == "train":
            p.model.backbone.fast_inference = False
            p.model.backbone.encoder.train()      # batch statistics
        d = nuclei_dice(p)
        print(f"{p.info['version']}  BatchNorm {mode:5s}  Dice per tile {np.round(d, 3).tolist()}  mean {np.mean(d):.3f}")


if __name__ == "__main__":
    main()
