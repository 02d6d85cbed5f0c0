"""Validation of a round's model on held-out accepted labels (never used for training)."""
from __future__ import annotations

import numpy as np
import torch

from ..inference.decode import predict_labels
from ..io.tiling import TileGrid, make_grid
from .evaluate import per_class_dice, summarise
from .types import ClassPrompts, TrainItem


def untile(labels: torch.Tensor, grid: TileGrid, classes: list[int]) -> np.ndarray:
    """Tile label maps (local ids) back to an (H, W) map of global class ids (+1)."""
    out = np.zeros((grid.height, grid.width), np.int64)
    lut = np.array([0] + [k + 1 for k in classes])
    for i, (y, x) in enumerate(grid.starts):
        hh, ww = min(grid.tile, grid.height - y), min(grid.tile, grid.width - x)
        out[y:y + hh, x:x + ww] = lut[labels[i, :hh, :ww].numpy()]
    return out


def validate(project, model, val: list[TrainItem], prompts: ClassPrompts, classes: list[str],
             device: str = "cpu") -> dict:
    """Mean Dice per class over the held-out images (each image scored on its own)."""
    scores = []
    for it in val:
        h, w = project.image(it.name).spatial_shape[:2]
        grid = make_grid(h, w, model.tile)
        pred, _ = predict_labels(model, it.emb, grid, prompts.embs, prompts.laterality, device=device,
                                 pixels=it.pixels)
        gt = untile(torch.where(it.labels < 0, 0, it.labels), grid, it.classes)
        scores.append(per_class_dice(pred, gt, len(classes)))
    return summarise(scores, classes)
