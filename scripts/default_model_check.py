"""Dice of a checkpoint on the bundled samples against their gold masks, and the objects found.

    .venv/bin/python scripts/default_model_check.py [CHECKPOINT_DIR]   # default: the shipped model

nuclei: the prompt 'nucleus' per tile (Dice of the foreground; connected components found
against the gold mask's). brain: every class on every slice, mean Dice over the classes present.
"""
from __future__ import annotations

import sys

import numpy as np
from scipy import ndimage

from promptseg import Predictor
from promptseg.io import load_sample


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return float(2 * (a & b).sum() / total) if total else 1.0


def main() -> None:
    pred = Predictor.load(sys.argv[1] if len(sys.argv) > 1 else None, device="cpu")
    nuclei = load_sample("nuclei")
    scores, objects = [], []
    for it in nuclei.items:
        pred.set_image(it.image)
        got, gold = pred.predict("nucleus").labels == 1, it.mask > 0
        scores.append(dice(got, gold))
        objects.append((ndimage.label(got)[1], ndimage.label(gold)[1]))
    print("nuclei Dice per tile", [round(d, 3) for d in scores], "mean", round(float(np.mean(scores)), 4))
    print("nuclei objects (found, gold) per tile", objects)
    brain = load_sample("brain")
    per_class = []
    for it in brain.items:
        pred.set_image(it.image)
        labels = pred.predict(brain.classes).labels
        per_class += [dice(labels == k, it.mask == k) for k in range(1, len(brain.classes) + 1) if (it.mask == k).any()]
    print("brain mean Dice over present classes", round(float(np.mean(per_class)), 4), "n", len(per_class))


if __name__ == "__main__":
    main()
