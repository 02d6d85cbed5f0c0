"""Tile embeddings of images, cached on disk by image hash + backbone hash.

The backbone is frozen by default, so an embedding stays valid across decoder versions:
training rounds and proposals reuse the same cache instead of re-running the encoder.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from ..fsutil import array_sha256
from ..io.normalise import hwc_view, prepare_hwc, prepare_image, scale_table
from ..io.tiling import TileGrid, extract_tiles, make_grid
from ..model.segmenter import PromptSegModel


def backbone_hash(model: PromptSegModel) -> str:
    cfg = model.cfg
    if cfg.train_backbone:  # fine-tuned weights: hash the tensors themselves
        h = hashlib.sha256()
        for k, v in sorted(model.backbone.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().numpy().tobytes())
        return h.hexdigest()
    # "eval-bn": older caches were computed with the frozen encoder's BatchNorm in training
    # mode (batch statistics); the key change keeps them from being reused
    key = [cfg.backbone, cfg.backbone_kwargs, getattr(model.backbone, "weights_sha256", None), "eval-bn"]
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


class EmbeddingCancelled(Exception):
    """Embedding stopped because its ``cancel`` callback returned True."""


# (tiles done, tiles total) after each encoder pass; and a callback asked before each pass.
Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]


@torch.no_grad()
def embed_image(model: PromptSegModel, image: np.ndarray, device: str = "cpu", bf16: bool = False,
                encoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
                progress: Progress | None = None, cancel: Cancel | None = None) -> tuple[torch.Tensor, TileGrid]:
    """Tile embeddings (T, C, g, g) as float32 on the CPU. ``bf16`` runs the encoder under
    bfloat16 autocast on CUDA (faster, but the numbers differ from float32 enough to change
    masks of a decoder trained on float32 embeddings);
    ``encoder``, ``progress``, ``cancel``: see :func:`embed_tiles`."""
    x, grid = image_tiles(image, model.tile, device)
    return embed_tiles(model, x, device, bf16, encoder, progress, cancel).cpu(), grid


def tile_pixels(image: np.ndarray, tile: int, prepared: bool = False) -> torch.Tensor:
    """The tiles' pixels as the pixel branch reads them: (T, 3, tile, tile) uint8, tiled like
    the embedding. ``prepared``: ``image`` already went through ``prepare_image``. uint8 keeps
    training items small (a 512² view is 0.8 MB) and is the same quantisation everywhere."""
    tiles, _ = extract_tiles(image if prepared else prepare_image(image), tile)
    return quantise_tiles(torch.from_numpy(tiles).permute(0, 3, 1, 2)).contiguous()


def quantise_tiles(tiles01: torch.Tensor) -> torch.Tensor:
    """[0, 1] float tiles -> uint8 (round half to even, like ``np.rint``), on their device."""
    return (tiles01 * 255.0).round_().clamp_(0, 255).to(torch.uint8)


def image_tiles(image: np.ndarray, tile: int, device: str | torch.device = "cpu",
                scale_on_device: bool | None = None) -> tuple[torch.Tensor, TileGrid]:
    """``extract_tiles(prepare_image(image))`` as (T, 3, tile, tile) float32 on ``device``, the
    same numbers. ``scale_on_device`` (default: on any device but the CPU): an 8/16-bit image is
    copied to the device as it is and scaled there through :func:`scale_table`'s lookup table,
    a quarter (8-bit gray: a twelfth) of the bytes to copy and no host pass over the float
    image. Other dtypes, and the CPU (where numpy's lookup is the faster one), prepare on the
    host."""
    arr = hwc_view(image)
    if scale_on_device is None:
        scale_on_device = torch.device(device).type != "cpu"
    table = scale_table(arr) if scale_on_device else None
    if table is None:
        tiles, grid = extract_tiles(prepare_hwc(arr), tile)
        return torch.from_numpy(tiles).permute(0, 3, 1, 2).contiguous().to(device), grid
    idx, lut = table
    grid = make_grid(arr.shape[0], arr.shape[1], tile)
    idx_t = torch.from_numpy(np.ascontiguousarray(idx if idx.dtype == np.uint8 else idx.astype(np.int32)))
    img = torch.from_numpy(lut).to(device)[idx_t.to(device).long()].permute(2, 0, 1)   # (C, H, W), C = 1 or 3
    out = torch.zeros(grid.n_tiles, 3, tile, tile, device=device)
    for i, (y, x) in enumerate(grid.starts):
        patch = img[:, y:y + tile, x:x + tile]
        out[i, :, :patch.shape[1], :patch.shape[2]] = patch   # one gray channel fills all three
    return out, grid


TILES_PER_PASS = 4   # a 512² image in one encoder call


@torch.no_grad()
def embed_tiles(model: PromptSegModel, tiles: torch.Tensor, device: str = "cpu", bf16: bool = False,
                encoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
                progress: Progress | None = None, cancel: Cancel | None = None) -> torch.Tensor:
    """(T, 3, tile, tile) tiles in [0, 1] -> float32 embeddings (T, C, g, g) on ``device``,
    :data:`TILES_PER_PASS` tiles per encoder call. ``encoder`` replaces ``model.embed`` (a
    Predictor's reduced-precision encoder, model/backbones/reduced_precision.py). ``progress``
    hears (tiles done, total) after each call; ``cancel`` returning True before a call raises
    EmbeddingCancelled."""
    encode = encoder or model.embed
    out = []
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16 and str(device).startswith("cuda")):
        for i in range(0, len(tiles), TILES_PER_PASS):
            if cancel is not None and cancel():
                raise EmbeddingCancelled(f"embedding cancelled after {i} of {len(tiles)} tiles")
            out.append(encode(tiles[i:i + TILES_PER_PASS].to(device)).float())
            if progress is not None:
                progress(min(i + TILES_PER_PASS, len(tiles)), len(tiles))
    return torch.cat(out)


class EmbeddingCache:
    """``folder/<backbone hash>[-bf16][-<encoder tag>]/<image hash>.npz`` holding float16 tile
    embeddings. Embeddings of other encoder arithmetic are kept apart: bfloat16 autocast (see
    :func:`embed_image`), or a Predictor's reduced-precision ``encoder`` with its ``encoder_tag``
    (training rounds read the float32 folder only)."""

    def __init__(self, folder: str | Path, model: PromptSegModel, device: str = "cpu", bf16: bool = False,
                 encoder: Callable[[torch.Tensor], torch.Tensor] | None = None, encoder_tag: str = ""):
        if (encoder is None) != (not encoder_tag):
            raise ValueError("an EmbeddingCache with its own encoder needs an encoder_tag, and only then")
        self.model = model
        self.device = device
        self.bf16 = bf16 and str(device).startswith("cuda")
        self.encoder = encoder
        self.folder = Path(folder) / (backbone_hash(model)[:16] + ("-bf16" if self.bf16 else "")
                                      + (f"-{encoder_tag}" if encoder_tag else ""))
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, sha: str) -> Path:
        return self.folder / f"{sha[:32]}.npz"

    def get(self, image: np.ndarray, sha: str | None = None, progress: Progress | None = None,
            cancel: Cancel | None = None) -> tuple[torch.Tensor, TileGrid]:
        sha = sha or array_sha256(image)
        p = self.path(sha)
        h, w = prepare_shape(image)
        if p.exists():
            try:
                with np.load(p, allow_pickle=False) as z:
                    emb = torch.from_numpy(z["emb"].astype(np.float32))
                grid = make_grid(h, w, self.model.tile)
                if emb.shape[0] == grid.n_tiles:
                    return emb, grid
            except (OSError, ValueError, KeyError):
                pass  # a corrupt cache entry is recomputed, never trusted
        emb, grid = embed_image(self.model, image, self.device, self.bf16, self.encoder, progress, cancel)
        half = emb.numpy().astype(np.float16)
        fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".npz")
        os.close(fd)
        try:
            np.savez(tmp, emb=half)
            os.replace(tmp, p)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        # What a later read returns, so a run that fills the cache trains on the same numbers
        # as one that reads it (otherwise the two runs' training diverges).
        return torch.from_numpy(half.astype(np.float32)), grid

    def warm(self, images: Iterable[tuple[str, np.ndarray]],
             progress: Callable[[int, int, str], None] | None = None) -> None:
        items = list(images)
        for i, (name, img) in enumerate(items):
            self.get(img)
            if progress:
                progress(i + 1, len(items), name)


def prepare_shape(image: np.ndarray) -> tuple[int, int]:
    from ..io.normalise import spatial_shape

    return spatial_shape(image)
