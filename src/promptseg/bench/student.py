"""The full-resolution student of the semi-supervised round, and its ensemble with the teacher.

``promptseg_student``   the standard U-Net (bench/unet_baseline.py, the ``unet`` settings and
                        loop) trained on the labelled images' masks plus the ``promptseg``
                        teacher's pseudo labels on the unlabelled images: the teacher's
                        foreground probability thresholded at one half, its uncertain pixels
                        (neither probability above ``confidence``) left out of the loss;
``promptseg_ensemble``  that student's and the teacher's probabilities averaged, thresholded at
                        one half.
The teacher is the ``promptseg`` model of the same run and seed (trained once, shared).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .data import SegImage
from .metrics import binary_scores
from .methods import STUDENT_METHODS, progress_printer
from .unet_baseline import UNet, UNetTrainConfig, predict_unet_prob, train_unet

@dataclass
class StudentSettings:
    confidence: float = 0.7      # a pseudo-labelled pixel counts when its class probability reaches this
    labelled_share: float = 0.5  # share of the crops drawn from the labelled images


def pseudo_target(prob: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """(mask, weight) of one image from the teacher's foreground probability: the mask is the
    probability thresholded at one half, the weight 1 where either class reaches ``confidence``."""
    if not 0.5 <= confidence < 1:
        raise ValueError(f"the pseudo-label confidence must be in [0.5, 1), got {confidence}")
    prob = np.asarray(prob, np.float32)
    keep = np.maximum(prob, 1 - prob) >= confidence
    return (prob >= 0.5).astype(np.uint8), keep.astype(np.float32)


def train_student(labelled: list[SegImage], unlabelled: list[SegImage], teacher_prob: Callable[[str], np.ndarray],
                  cfg: UNetTrainConfig, settings: StudentSettings = StudentSettings(), device: str = "cpu",
                  on_step: Callable[[dict], None] | None = None) -> tuple[UNet, dict]:
    """A fresh U-Net trained on ``labelled`` masks and the teacher's pseudo labels of ``unlabelled``
    (``teacher_prob(name)``: the teacher's (H, W) foreground probability of that image). Returns
    the model and the pseudo labels' statistics."""
    targets = [pseudo_target(teacher_prob(r.name), settings.confidence) for r in unlabelled]
    images = [r.image for r in labelled] + [r.image for r in unlabelled]
    masks = [r.mask for r in labelled] + [m for m, _ in targets]
    weights = [np.ones(r.mask.shape[:2], np.float32) for r in labelled] + [w for _, w in targets]
    net = train_unet(images, masks, cfg, device, on_step=on_step, weights=weights, first=len(labelled),
                     first_share=settings.labelled_share if unlabelled else None)
    kept = float(np.mean([w.mean() for _, w in targets])) if targets else 0.0
    fg = float(np.mean([m.mean() for m, _ in targets])) if targets else 0.0
    return net, {"pseudo_images": len(targets), "pseudo_kept_fraction": round(kept, 4),
                 "pseudo_foreground": round(fg, 4)}


def ensemble_prob(student_prob: np.ndarray, teacher_prob: np.ndarray) -> np.ndarray:
    """The mean of the two models' foreground probabilities."""
    if student_prob.shape != teacher_prob.shape:
        raise ValueError(f"student {student_prob.shape} vs teacher {teacher_prob.shape} probabilities")
    return (student_prob + teacher_prob) / 2


class StudentRuns:
    """The student of each seed, trained once and shared by ``promptseg_student`` and
    ``promptseg_ensemble``; its evaluation probabilities are kept with it."""

    def __init__(self, settings: StudentSettings = StudentSettings()):
        self.settings = settings
        self.by_seed: dict[int, tuple[dict[str, np.ndarray], float, dict]] = {}

    def score(self, method: str, cfg: UNetTrainConfig, labelled: list[SegImage], unlabelled: list[SegImage],
              evals: list[SegImage], teacher_prob: Callable[[str], np.ndarray], device: str,
              log: Callable[[str], None], tag: str) -> tuple[list[dict], float, dict]:
        """(per-image scores, training seconds, pseudo-label statistics) of ``method``."""
        if method not in STUDENT_METHODS:
            raise ValueError(f"{method} is not a student method; choose from {', '.join(STUDENT_METHODS)}")
        if cfg.seed not in self.by_seed:
            t = time.time()
            net, stats = train_student(labelled, unlabelled, teacher_prob, cfg, self.settings, device,
                                       progress_printer(tag, cfg.steps, log))
            probs = {r.name: predict_unet_prob(net, r.image, device, cfg.crop) for r in evals}
            self.by_seed[cfg.seed] = (probs, time.time() - t, stats)
        probs, seconds, stats = self.by_seed[cfg.seed]
        out = []
        for r in evals:
            p = probs[r.name] if method == "promptseg_student" else ensemble_prob(probs[r.name], teacher_prob(r.name))
            out.append({"image": r.name, **binary_scores((p >= 0.5).astype(np.int32), r.mask)})
        return out, seconds, stats
