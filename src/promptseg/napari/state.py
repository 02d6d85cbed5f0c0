"""The proposal on screen: which image, which layer, what the model said (no Qt here)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Proposal:
    """A proposal shown as a Labels layer. ``probs`` is None for one restored from the project
    or a draft: then ``fixed`` holds the proposal's label map and the threshold cannot re-merge."""
    layer: str                       # name of the Labels layer
    image: str                       # image name (= project image name when in a project)
    prompts: list[str]
    image_array: np.ndarray          # the 2-D image (slice) or the 3-D volume the proposal is for
    probs: np.ndarray | None = None  # (K, H, W) or (K, Z, H, W)
    presence: np.ndarray | None = None
    fixed: np.ndarray | None = None  # proposal label map when probs is None
    model_version: int | None = None
    prompt: str = ""
    tau: float = 0.5                 # threshold the layer was merged at
    shown_at: float = field(default_factory=time.time)
    saved_proposal: np.ndarray | None = None  # proposal label map already stored in the project
    accepted: np.ndarray | None = None        # label map last accepted (stored) for this image
    refine: dict | None = None                # points / box / exemplars of the last Refine
    slice_index: int | None = None            # for a proposal on one slice of a volume (axis 0)
    stashed: np.ndarray | None = None         # edits last kept as a draft (not saved twice)

    def labels(self, tau: float | None = None) -> np.ndarray:
        tau = self.tau if tau is None else tau
        if self.probs is None:
            return np.asarray(self.fixed, np.int32)
        return np.where(self.probs.max(0) >= tau, self.probs.argmax(0) + 1, 0).astype(np.int32)


def mean_entropy(probs: np.ndarray) -> float:
    """Mean binary entropy (bits) of per-class probabilities: 0 = certain, 1 = coin flip."""
    p = np.clip(np.asarray(probs, np.float64), 1e-6, 1 - 1e-6)
    return float(np.mean(-(p * np.log2(p) + (1 - p) * np.log2(1 - p))))


def expert_disagreement(probs: np.ndarray, grounding: np.ndarray | None, tau: float = 0.5,
                        exemplar: np.ndarray | None = None) -> float | None:
    """1 − Dice between the decoder's masks and each expert's: the text expert (grounding map
    ≥ 0.5) and, when given, the exemplar expert (the decoder prompted with exemplars, ≥ tau);
    averaged over the classes either side marks (0 when both are empty). None without a map."""
    if grounding is None:
        return None
    experts = [(np.asarray(grounding), 0.5)] + ([(np.asarray(exemplar), tau)] if exemplar is not None else [])
    scores = []
    for expert, cut in experts:
        for p, g in zip(np.asarray(probs), expert):
            a, b = p >= tau, g >= cut
            total = int(a.sum()) + int(b.sum())
            if total:
                scores.append(1.0 - 2.0 * int((a & b).sum()) / total)
    return float(np.mean(scores)) if scores else 0.0


def priority(row: dict) -> float:
    """How much an image needs the annotator: uncertainty (mean entropy, 0..1) plus the
    disagreement between the model and its experts (0..1)."""
    return (row["uncertainty"] or 0.0) + (row.get("disagreement") or 0.0)


def suggest_next(rows: list[dict], exclude: str | None = None) -> tuple[dict | None, str]:
    """Pick the next image to annotate from ``Project.image_status()`` rows, with the reason.

    Accepted images (corrected, gold) are skipped. Images the model has not scored yet come
    first (nothing is known about them), in project order; then the highest priority
    (uncertainty + expert disagreement)."""
    todo = [r for r in rows if r["status"] in ("unlabelled", "proposed") and r["name"] != exclude]
    if not todo:
        return None, "every image has an accepted label"
    unscored = [r for r in todo if r["uncertainty"] is None]
    if unscored:
        r = unscored[0]
        return r, (f"{r['name']}: not yet scored by the model ({len(unscored)} unscored, "
                   f"{len(todo)} not accepted)")
    r = max(todo, key=priority)
    model = f"model v{r['model_version']}" if r["model_version"] is not None else "the default model"
    why = f"uncertainty {r['uncertainty']:.3f} (mean entropy of {model})"
    if r.get("disagreement") is not None:
        why += f", model and its experts disagree on {100 * r['disagreement']:.0f}%"
    return r, f"{r['name']}: highest priority: {why} among {len(todo)} not accepted"
