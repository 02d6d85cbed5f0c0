"""Objects made in the dock from a box, clicks or "more like this": each one mask of one class,
painted into the image's label map as its own instance, and counted per source when accepted."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..project.records import MaskSource

OBJECT_SOURCES = ("box", "click", "exemplar")


@dataclass
class MaskObject:
    """One instance: ``mask`` (H, W) bool of class ``class_name``, made from ``source`` with the
    model's predicted quality ``score`` (None when it has none)."""
    mask: np.ndarray
    class_name: str
    source: str
    score: float | None = None

    def __post_init__(self) -> None:
        if self.source not in OBJECT_SOURCES:
            raise ValueError(f"an object's source must be one of {OBJECT_SOURCES}, got {self.source!r}")
        if not self.class_name.strip():
            raise ValueError("name the object's class first (type it in Classes)")
        self.mask = np.asarray(self.mask, bool)


def class_value(classes: list[str], name: str) -> tuple[list[str], int]:
    """(classes, value of ``name`` in them): a new class is appended (matched case-insensitively)."""
    lower = [c.lower() for c in classes]
    key = name.strip().lower()
    if key in lower:
        return list(classes), lower.index(key) + 1
    return [*classes, name.strip()], len(classes) + 1


def paint_object(labels: np.ndarray, classes: list[str], obj: MaskObject,
                 only_background: bool = False) -> tuple[np.ndarray, list[str], int]:
    """(new label map, classes, pixels painted): ``obj`` painted under its class; with
    ``only_background`` it fills only unlabelled pixels, so nothing already marked changes."""
    if obj.mask.shape != labels.shape:
        raise ValueError(f"the object's mask has shape {obj.mask.shape}, the labels {labels.shape}")
    classes, value = class_value(classes, obj.class_name)
    where = obj.mask & (labels == 0) if only_background else obj.mask
    out = np.asarray(labels, np.int32).copy()
    out[where] = value
    return out, classes, int(where.sum())


def instance_map(labels: np.ndarray, classes: list[str], objects: list[MaskObject]) -> np.ndarray:
    """(H, W) int32: object i + 1 where its mask still holds its class in ``labels``."""
    out = np.zeros(labels.shape, np.int32)
    lower = [c.lower() for c in classes]
    for i, obj in enumerate(objects):
        if obj.class_name.lower() in lower:
            out[obj.mask & (labels == lower.index(obj.class_name.lower()) + 1)] = i + 1
    return out


def mask_sources(proposal: np.ndarray, final: np.ndarray, classes: list[str],
                 objects: list[MaskObject] | None = None) -> list[MaskSource]:
    """Where the accepted pixels of each class came from: an object's source where an object of
    that class covers them (first object first), else ``text`` where the proposal already had
    the class, else ``painted`` (the annotator's brush)."""
    out = []
    for k, name in enumerate(classes, start=1):
        px = final == k
        if not px.any():
            continue
        claimed = np.zeros_like(px)
        per: dict[str, list] = {}
        for obj in objects or []:
            if obj.class_name.lower() != name.lower() or obj.mask.shape != px.shape:
                continue
            got = obj.mask & px & ~claimed
            if got.any():
                claimed |= got
                n, count, scores = per.get(obj.source, (0, 0, []))
                per[obj.source] = (n + int(got.sum()), count + 1, scores + ([] if obj.score is None else [obj.score]))
        for source, (n, count, scores) in per.items():
            out.append(MaskSource(name, source, n, count, float(np.mean(scores)) if scores else None))
        rest = px & ~claimed
        text = int((rest & (proposal == k)).sum())
        if text:
            out.append(MaskSource(name, "text", text))
        if rest.sum() - text:
            out.append(MaskSource(name, "painted", int(rest.sum() - text)))
    return out
