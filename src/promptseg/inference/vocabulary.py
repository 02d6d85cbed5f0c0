"""Which prompts name a class the model or the project knows, by the frozen text encoder.

A prompt is known when its text (laterality removed, as the model reads it) is at least
``KNOWN_SIMILARITY`` cosine-similar to a known class: the model's learnt classes (its
checkpoint's ``classes``) or the project's classes that have accepted labels. The threshold
sits between the synonyms of known classes and unrelated organs, measured on MiniLM
(docs/benchmarks.md, "Unknown classes").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from ..model.text import parse_prompt

KNOWN_SIMILARITY = 0.55


@dataclass
class ClassKnowledge:
    known: np.ndarray              # (K,) bool
    nearest: list[str | None]      # the closest known class per prompt (None: no classes known)
    similarity: np.ndarray         # (K,) float32 cosine similarity to it (0 when none)


def class_knowledge(prompts: list[str], vocabulary: Iterable[str], text_encoder,
                    threshold: float = KNOWN_SIMILARITY) -> ClassKnowledge:
    """``text_encoder`` needs ``similarity(a, names)`` (model/text.py's TextEncoder)."""
    vocab = list(dict.fromkeys(parse_prompt(v).text for v in vocabulary))
    known, nearest, sims = [], [], []
    for p in prompts:
        text = parse_prompt(p).text
        s, best = 0.0, None
        if text in vocab:
            s, best = 1.0, text
        elif vocab:
            sim = text_encoder.similarity(text, vocab)
            i = int(sim.argmax())
            s, best = float(sim[i]), vocab[i]
        known.append(best is not None and s >= threshold)
        nearest.append(best)
        sims.append(s)
    return ClassKnowledge(np.array(known, bool), nearest, np.array(sims, np.float32))


def accepted_classes(project) -> set[str]:
    """Classes that appear in a project's accepted (gold or corrected) labels."""
    return {c for rec in project.labels(kinds=("gold", "corrected")) for c in rec.classes}


def unknown_message(prompts: list[str], known: np.ndarray | None) -> str | None:
    """What to tell the annotator about prompts whose class is not known; None if all are."""
    if known is None or bool(np.all(known)):
        return None
    names = " or ".join(f"'{p}'" for p, k in zip(prompts, known) if not k)
    return f"PromptSeg has not learnt {names} yet: draw a box or click on one"


def hide_unknown(prediction) -> str | None:
    """Clear the masks and probabilities of prompts whose class is not known (so a threshold
    change does not bring them back); returns the message for the annotator, or None."""
    message = unknown_message(prediction.prompts, prediction.known)
    if message is not None:
        unknown = ~np.asarray(prediction.known, bool)
        prediction.probs[unknown] = 0.0
        prediction.labels = np.where(np.isin(prediction.labels, np.flatnonzero(unknown) + 1), 0,
                                     prediction.labels).astype(prediction.labels.dtype)
    return message


def presence_text(prediction) -> str:
    """One line per prompt for the dock: the presence score only where there is a mask to
    back it; "not learnt" or "nothing found" otherwise, never a number over an empty mask."""
    parts = []
    for k, (name, p) in enumerate(zip(prediction.prompts, prediction.presence)):
        if prediction.known is not None and not prediction.known[k]:
            parts.append(f"■ {name}: not learnt")
        elif not (prediction.labels == k + 1).any():
            parts.append(f"■ {name}: nothing found")
        else:
            parts.append(f"■ {name}: {p:.2f}")
    return "  ".join(parts)
