"""Which image the annotator should see next: the model's uncertainty, its experts'
disagreement, and the order Next takes through a project's images."""
from __future__ import annotations

import numpy as np


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


def upcoming(rows: list[dict], current: str | None, n: int) -> list[str]:
    """The next ``n`` images in the order Next would open them."""
    out: list[str] = []
    rows = list(rows)
    for _ in range(n):
        row, _ = suggest_next(rows, exclude=current)
        if row is None:
            break
        out.append(row["name"])
        rows = [r for r in rows if r["name"] != row["name"]]
    return out
