"""Exemplars from accepted labels: the newest accepted labels of each prompted class, pooled
into image-feature vectors (``Predictor.exemplar_vector``) that prompt the decoder."""
from __future__ import annotations

import threading

import numpy as np


def exemplar_sources(project, prompts: list[str], exclude: str | None, limit: int) -> dict[str, list]:
    """prompt -> the newest accepted labels (label record, class value) holding that class, at
    most ``limit`` each, none of the image ``exclude``."""
    out: dict[str, list] = {p: [] for p in prompts}
    if project is None:
        return out
    for lab in reversed(project.labels(kinds=("gold", "corrected"))):
        if lab.image_name == exclude:
            continue
        names = [c.lower() for c in lab.classes]
        for p in prompts:
            if p.lower() in names and len(out[p]) < limit:
                out[p].append((lab, names.index(p.lower()) + 1))
    return out


class ExemplarVectors:
    """Pooled exemplar vectors, kept per (model hash, label id, class value): each exemplar image
    is embedded once per model. Call under the predictor's lock (it sets the predictor's image)."""

    def __init__(self) -> None:
        self._cache: dict[tuple, np.ndarray] = {}
        self._lock = threading.Lock()

    def vectors(self, predictor, project, sources: dict[str, list]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for prompt, labs in sources.items():
            vs = []
            for lab, value in labs:
                key = (predictor.model_hash, lab.id, value)
                with self._lock:
                    hit = self._cache.get(key)
                if hit is None:
                    mask, _ = project.read_label(lab)
                    if mask.ndim != 2 or not (mask == value).any():
                        continue
                    predictor.set_image(project.read_image(lab.image_name))
                    hit = predictor.exemplar_vector(mask == value)
                    with self._lock:
                        self._cache[key] = hit
                vs.append(hit)
            if vs:
                out[prompt] = np.stack(vs)
        return out
