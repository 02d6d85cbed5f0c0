"""Decode prompts over all tiles of an embedded image and blend to full resolution."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..io.tiling import TileGrid, blend_tiles
from ..model.decoder import PromptBatch
from ..model.heads import merge_classes
from ..model.segmenter import PromptSegModel, prompt_batch
from ..model.text import TextEmbedding


def decode_probs(model: PromptSegModel, emb: torch.Tensor, grid: TileGrid, pb: PromptBatch, k: int,
                 chunk: int = 16, pix: torch.Tensor | None = None,
                 fine: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """emb (T,C,h,w) and a prompt batch of T*K queries -> probs (K,H,W), presence (K,).
    ``pix``: cached grounding pixel features of the tiles (prompt-independent); ``fine``: the
    pixel branch's features of the tiles (needed by a model with the branch)."""
    if pix is None and model.cfg.grounding_prompt:
        pix = model.grounding.pixel_features(emb)   # once, not once per chunk
    t = grid.n_tiles
    masks, pres = [], []
    n = t * k
    for s in range(0, n, chunk):  # bounded memory: each query owns a copy of the image tokens
        sub = PromptBatch(**{f: (v[s:s + chunk] if isinstance(v, torch.Tensor) else v)
                             for f, v in vars(pb).items()})
        out = model.decode(emb, sub, pix=pix, fine=fine)
        masks.append(out.mask_logits.float())
        pres.append(out.presence_logit.float())
    logits = torch.cat(masks).reshape(t, k, *masks[0].shape[-2:])
    if logits.shape[-1] != grid.tile:
        logits = F.interpolate(logits, size=(grid.tile, grid.tile), mode="bilinear", align_corners=False)
    probs = blend_tiles(torch.sigmoid(logits), grid)
    presence = torch.sigmoid(torch.cat(pres).reshape(t, k)).amax(0)
    return probs, presence


@torch.no_grad()
def predict_labels(model: PromptSegModel, emb: torch.Tensor, grid: TileGrid, embs: list[TextEmbedding],
                   laterality: list[int], tau: float | None = None, device: str = "cpu",
                   pixels: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Label map (H,W) and probabilities (K,H,W) for the given class prompts. ``pixels``: the
    tiles' pixels (inference/embeddings.tile_pixels), needed by a model with a pixel branch."""
    model.eval()
    pb = prompt_batch(embs, laterality, grid.n_tiles, device)
    fine = model.fine_features(None if pixels is None else pixels.to(device))
    probs, _ = decode_probs(model, emb.to(device), grid, pb, len(embs), fine=fine)
    labels = merge_classes(probs, model.cfg.threshold if tau is None else tau)
    return labels.cpu().numpy().astype(np.int32), probs.cpu().numpy()
