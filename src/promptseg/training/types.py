"""The data the trainers share: labelled and unlabelled items, the class prompts, and the
crops and batches one optimiser step reads (fields by name, not positions in a tuple)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..model.decoder import PromptBatch
from ..model.text import MAX_TOKENS, TextEmbedding


@dataclass
class TrainItem:
    name: str
    emb: torch.Tensor          # (T, C, g, g) tile embeddings
    labels: torch.Tensor       # (T, tile, tile) long; 0 background, i+1 -> classes[i], -1 ignore
    classes: list[int]         # global class index of each label value
    pixels: torch.Tensor | None = None   # (T, 3, tile, tile) uint8, for a model's pixel branch


@dataclass
class UnlabelledItem:
    name: str
    emb: torch.Tensor                  # (T, C, g, g)
    strong_emb: torch.Tensor | None = None  # embedding of a photometric strong view (augment.py)
    pixels: torch.Tensor | None = None      # (T, 3, tile, tile) uint8, for a pixel branch
    strong_pixels: torch.Tensor | None = None  # the strong view's pixels


@dataclass
class ClassPrompts:
    names: list[str]
    embs: list[TextEmbedding]
    laterality: list[int]

    def as_cache(self) -> dict[str, TextEmbedding]:
        """Embeddings keyed as the TextEncoder caches them (laterality words stripped)."""
        from ..model.text import parse_prompt

        return {parse_prompt(n).text: e for n, e in zip(self.names, self.embs)}

    def tensors(self, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        pooled = torch.from_numpy(np.stack([e.pooled for e in self.embs])).float().to(device)
        tokens = torch.from_numpy(np.stack([e.tokens for e in self.embs])).float().to(device)
        lengths = torch.tensor([e.n_tokens for e in self.embs], device=device)
        mask = torch.arange(MAX_TOKENS, device=device)[None] < lengths[:, None]
        return pooled, tokens, mask, torch.tensor(self.laterality, dtype=torch.long, device=device)


@dataclass
class LabelledCrop:
    """One tile's embedding under a square window of the token grid, with its labels."""
    emb: torch.Tensor                    # (C, c, c)
    labels: torch.Tensor                 # (c·s, c·s) long: -1 ignore, 0 background, k+1 global class k
    window: tuple[int, int, int]         # (y, x, c) on the token grid: where the positional encoding is read
    pixels: torch.Tensor | None = None   # (3, c·s, c·s) float in [0, 1], for a model's pixel branch


@dataclass
class UnlabelledViews:
    """A batch of unlabelled crops on the device: the weak view the teacher reads and the
    strong view the student learns on, each with its pixels (None without a pixel branch)."""
    weak: torch.Tensor                   # (B, C, c, c)
    strong: torch.Tensor                 # (B, C, c, c)
    items: list[UnlabelledItem]          # the item each crop was cut from
    weak_pixels: torch.Tensor | None
    strong_pixels: torch.Tensor | None


@dataclass
class UnlabelledTargets:
    """What the student is trained on for unlabelled crops: its input (the strong view and
    every class as a query) and the teacher's pseudo labels."""
    strong: torch.Tensor                 # (B, C, c, c)
    strong_pixels: torch.Tensor | None
    queries: PromptBatch                 # every class for every crop, crop-major
    pe: torch.Tensor                     # positional encoding of the crop
    onehot: torch.Tensor                 # (B, K, H, W) pseudo label per class
    confident: torch.Tensor              # (B, H, W) pixels whose pseudo label is used
    grounding: torch.Tensor              # (B·K, H, W) the text expert's logits
