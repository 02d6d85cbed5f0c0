"""Training items from a project: accepted labels + cached tile embeddings."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..io.tiling import tile_masks
from ..model.text import TextEncoder, parse_prompt
from ..project import Project
from .embeddings import EmbeddingCache
from .stage1 import ClassPrompts, TrainItem


def class_prompts(names: list[str], text: TextEncoder) -> ClassPrompts:
    parsed = [parse_prompt(n) for n in names]
    return ClassPrompts(list(names), text.encode([p.text for p in parsed]), [p.laterality for p in parsed])


def make_item(name: str, emb: torch.Tensor, grid, labels: np.ndarray, label_classes: list[str],
              class_names: list[str]) -> TrainItem:
    index = {c.lower(): i for i, c in enumerate(class_names)}
    return TrainItem(name, emb, torch.from_numpy(tile_masks(labels.astype(np.int64), grid)),
                     [index[c.lower()] for c in label_classes])


def labelled_items(project: Project, cache: EmbeddingCache, kinds: tuple[str, ...] = ("gold", "corrected"),
                   progress: Callable[[int, int, str], None] | None = None) -> tuple[list[TrainItem], list[str]]:
    """One item per image with an accepted label (its latest version), one per labelled slice
    of an accepted volume (axis 0); all project classes."""
    recs = project.labelled_images(kinds)
    class_names = [c.name for c in project.classes()]
    items = []
    for i, rec in enumerate(recs):
        lab_rec = project.latest_label(rec, kinds)
        labels, label_classes = project.read_label(lab_rec)
        image = project.read_image(rec)
        if labels.ndim == 3:     # a volume: every slice with a label is a 2-D training item
            for z in np.flatnonzero(labels.reshape(len(labels), -1).any(1)):
                emb, grid = cache.get(image[z])
                items.append(make_item(f"{rec.name}[{z}]", emb, grid, labels[z], label_classes, class_names))
        else:
            emb, grid = cache.get(image, rec.sha256)
            items.append(make_item(rec.name, emb, grid, labels, label_classes, class_names))
        if progress:
            progress(i + 1, len(recs), rec.name)
    return items, class_names


def volume_slice_indices(n: int, at_most: int = 16) -> list[int]:
    """Evenly spaced slices of an unlabelled volume that a round uses (embedding all is slow)."""
    return sorted(set(np.linspace(0, n - 1, min(n, at_most)).round().astype(int).tolist()))
