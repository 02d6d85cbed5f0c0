"""Training items from a project: accepted labels + cached tile embeddings."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..inference.embeddings import EmbeddingCache, tile_pixels
from ..io.tiling import tile_masks
from ..model.text import TextEncoder, parse_prompt
from ..project import Project
from .augment import D4_VIEWS, image_view, view_suffix
from .types import ClassPrompts, TrainItem


def class_prompts(names: list[str], text: TextEncoder) -> ClassPrompts:
    parsed = [parse_prompt(n) for n in names]
    return ClassPrompts(list(names), text.encode([p.text for p in parsed]), [p.laterality for p in parsed])


def make_item(name: str, emb: torch.Tensor, grid, labels: np.ndarray, label_classes: list[str],
              class_names: list[str], pixels: torch.Tensor | None = None) -> TrainItem:
    """``pixels``: the tiles' pixels (embeddings.tile_pixels), for a model with a pixel branch."""
    index = {c.lower(): i for i, c in enumerate(class_names)}
    return TrainItem(name, emb, torch.from_numpy(tile_masks(labels.astype(np.int64), grid)),
                     [index[c.lower()] for c in label_classes],
                     pixels)


@dataclass
class LabelledSource:
    """One accepted 2-D label and its image (a volume gives one per labelled slice)."""
    name: str
    image: np.ndarray            # (H, W) or (H, W, C)
    labels: np.ndarray           # (H, W) label values; 0 background
    label_classes: list[str]     # class name of each label value 1..n
    sha: str | None = None       # the project's hash of the image (None: hash the pixels)


def labelled_sources(project: Project, kinds: tuple[str, ...] = ("gold", "corrected")) -> tuple[list[LabelledSource], list[str]]:
    """Every accepted label (the latest version per image), one per labelled slice of an
    accepted volume (axis 0), and the project's class names."""
    out = []
    for rec in project.labelled_images(kinds):
        labels, label_classes = project.read_label(project.latest_label(rec, kinds))
        image = project.read_image(rec)
        if labels.ndim == 3:     # a volume: every slice with a label is a 2-D training item
            for z in np.flatnonzero(labels.reshape(len(labels), -1).any(1)):
                out.append(LabelledSource(f"{rec.name}[{z}]", image[z], labels[z], label_classes))
        else:
            out.append(LabelledSource(rec.name, image, labels, label_classes, rec.sha256))
    return out, [c.name for c in project.classes()]


def items_from_sources(sources: list[LabelledSource], cache: EmbeddingCache, class_names: list[str], views: int = 1,
                       progress: Callable[[int, int, str], None] | None = None) -> list[TrainItem]:
    """Training items: the first ``views`` dihedral views of each source (augment.py:
    ``image_view``), each run through the encoder -- turning a cached embedding is no substitute,
    the encoder is not rotation-equivariant. Views are cached like any image."""
    if not 1 <= views <= len(D4_VIEWS):
        raise ValueError(f"views must be between 1 and {len(D4_VIEWS)}, got {views}")
    items = []
    for i, src in enumerate(sources):
        for v, geo in enumerate(D4_VIEWS[:views]):
            image, labels = image_view(src.image, geo), image_view(src.labels, geo)
            emb, grid = cache.get(image, src.sha if v == 0 else None)
            items.append(make_item(src.name + view_suffix(geo), emb, grid, labels, src.label_classes, class_names,
                                   tile_pixels(image, grid.tile)))
        if progress:
            progress(i + 1, len(sources), src.name)
    return items


def labelled_items(project: Project, cache: EmbeddingCache, kinds: tuple[str, ...] = ("gold", "corrected"),
                   progress: Callable[[int, int, str], None] | None = None) -> tuple[list[TrainItem], list[str]]:
    """One item per accepted label (see :func:`labelled_sources`), with all project classes."""
    sources, class_names = labelled_sources(project, kinds)
    return items_from_sources(sources, cache, class_names, progress=progress), class_names


def volume_slice_indices(n: int, at_most: int = 16) -> list[int]:
    """Evenly spaced slices of an unlabelled volume that a round uses (embedding all is slow)."""
    return sorted(set(np.linspace(0, n - 1, min(n, at_most)).round().astype(int).tolist()))
