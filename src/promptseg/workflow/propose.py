"""Propose: map typed prompts onto the project's classes, decode them on an image with the
text (and, if asked, exemplar) expert beside, score the result, store it in the project."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .class_map import Mapped, map_prompts, unique_names
from .scoring import expert_disagreement, mean_entropy


@dataclass
class Proposed:
    result: object                  # the Predictor's Prediction
    mapped: list[Mapped]            # how each typed prompt was mapped onto a class
    uncertainty: float              # mean entropy of the probabilities
    disagreement: float | None      # 1 − Dice against the experts (None without a grounding map)


def propose(predictor, image: np.ndarray, prompts: list[str], classes: dict[str, list[str]], tau: float | None,
            map_names: bool = True,
            exemplars: Callable[[list[str]], dict[str, np.ndarray]] | None = None,
            progress: Callable[[int, int], None] | None = None) -> Proposed:
    """Decode ``prompts`` on ``image`` (call under the predictor's lock). ``classes``: the
    project's class -> synonyms; ``tau`` None: the model's threshold; ``map_names`` False
    decodes the prompts as given (already class names). ``exemplars`` (class names -> class ->
    vectors) adds the exemplar expert to the disagreement; ``progress(done, total)`` hears of
    the embedding's tiles."""
    mapped = map_prompts(prompts, classes, predictor.text) if map_names else [Mapped(p, p, 1.0) for p in prompts]
    names = unique_names(mapped)
    tau = predictor.model.cfg.threshold if tau is None else tau
    ex = exemplars(names) if exemplars is not None else None    # may embed other images: first
    predictor.set_image(image, progress=progress)
    r = predictor.predict(names, threshold=tau, grounding=True)
    rx = predictor.predict(names, threshold=tau, exemplars=ex) if ex else None
    dis = expert_disagreement(r.probs, r.grounding, tau, None if rx is None else rx.probs)
    return Proposed(r, mapped, mean_entropy(r.probs), dis)


def register_prompts(project, mapped: list[Mapped]) -> list[str]:
    """New names become classes; a prompt mapped onto a class by similarity becomes a synonym.
    Returns the problems (one message each); the other prompts are still registered."""
    from ..project import ProjectError

    errors = []
    for m in mapped:
        try:
            if m.is_new:
                project.add_class(m.name)
            elif m.typed.strip().lower() != m.name.lower():
                project.add_synonym(m.name, m.typed.strip())
        except ProjectError as exc:
            errors.append(str(exc))
    return errors


def store_proposal(project, image, labels: np.ndarray | None, prompts: list[str], uncertainty: float,
                   disagreement: float | None, model_version: int | None, prompt: str | None = None):
    """Store a proposal label (unless ``labels`` is None or not the image's shape) and the
    image's scores that rank it for Next. Returns the label record, or None when only the
    scores were stored."""
    rec = project.image(image)
    lab = None
    if labels is not None and labels.shape == rec.spatial_shape:
        lab = project.save_label(rec, labels, prompts, "proposal", model_version=model_version,
                                 prompt="; ".join(prompts) if prompt is None else prompt)
    project.set_uncertainty(rec, uncertainty, model_version=model_version, disagreement=disagreement)
    return lab
