"""Native-resolution tiling: cut an image into fixed-size tiles and blend per-tile maps back.

Images smaller than a tile are zero-padded (not resized), so a pixel is always a pixel.
Larger sides get ceil(L / tile) evenly spaced tiles; where they overlap, maps are blended
with a smooth window so seams do not show.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def tile_starts(length: int, tile: int) -> list[int]:
    if length <= tile:
        return [0]
    n = -(-length // tile)
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


@dataclass(frozen=True)
class TileGrid:
    height: int
    width: int
    tile: int
    starts: tuple[tuple[int, int], ...]

    @property
    def n_tiles(self) -> int:
        return len(self.starts)


def make_grid(height: int, width: int, tile: int) -> TileGrid:
    starts = tuple((y, x) for y in tile_starts(height, tile) for x in tile_starts(width, tile))
    return TileGrid(height, width, tile, starts)


def extract_tiles(image: np.ndarray, tile: int) -> tuple[np.ndarray, TileGrid]:
    """(H,W,C) -> (T, tile, tile, C) zero-padded tiles and the grid that places them."""
    h, w = image.shape[:2]
    grid = make_grid(h, w, tile)
    out = np.zeros((grid.n_tiles, tile, tile, image.shape[2]), dtype=image.dtype)
    for i, (y, x) in enumerate(grid.starts):
        patch = image[y:y + tile, x:x + tile]
        out[i, :patch.shape[0], :patch.shape[1]] = patch
    return out, grid


def _window(tile: int, device: torch.device) -> torch.Tensor:
    # Raised cosine that never reaches 0, so a pixel covered by one tile keeps full weight.
    r = torch.hann_window(tile + 2, periodic=False, device=device)[1:-1].clamp_min(1e-3)
    return r[:, None] * r[None, :]


def blend_tiles(maps: torch.Tensor, grid: TileGrid) -> torch.Tensor:
    """(T, K, tile, tile) per-tile maps -> (K, H, W) weighted average over overlapping tiles."""
    t, k = maps.shape[:2]
    if t != grid.n_tiles:
        raise ValueError(f"got {t} tile maps for a grid of {grid.n_tiles} tiles")
    if t == 1:
        return maps[0, :, :grid.height, :grid.width]
    win = _window(grid.tile, maps.device).to(maps.dtype)
    out = maps.new_zeros((k, grid.height, grid.width))
    norm = maps.new_zeros((1, grid.height, grid.width))
    for i, (y, x) in enumerate(grid.starts):
        hh, ww = min(grid.tile, grid.height - y), min(grid.tile, grid.width - x)
        out[:, y:y + hh, x:x + ww] += maps[i, :, :hh, :ww] * win[:hh, :ww]
        norm[:, y:y + hh, x:x + ww] += win[:hh, :ww]
    return out / norm


def tile_masks(mask: np.ndarray, grid: TileGrid) -> np.ndarray:
    """Cut a (H,W) or (K,H,W) map into the grid's tiles; padding is filled with -1 (ignore)."""
    squeeze = mask.ndim == 2
    m = mask[None] if squeeze else mask
    out = np.full((grid.n_tiles, m.shape[0], grid.tile, grid.tile), -1, dtype=np.int64)
    for i, (y, x) in enumerate(grid.starts):
        patch = m[:, y:y + grid.tile, x:x + grid.tile]
        out[i, :, :patch.shape[1], :patch.shape[2]] = patch
    return out[:, 0] if squeeze else out
