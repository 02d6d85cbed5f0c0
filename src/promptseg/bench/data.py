"""Benchmark data in the MoNuSeg folder format, and the labelled-subset draw.

A data folder holds ``images/*.png``, ``masks/*.png`` (same file names; any value > 0 is
foreground) and ``captions.csv`` with columns ``image,split,caption``.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..training.augment import D4_VIEWS, image_view, view_suffix


@dataclass
class SegImage:
    name: str            # file stem
    split: str           # train | val | test
    caption: str
    image: np.ndarray    # (H, W, 3) uint8 as stored
    mask: np.ndarray     # (H, W) uint8 {0, 1}


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.array(im)


def load_seg_dir(folder: str | Path) -> list[SegImage]:
    """Every row of ``captions.csv`` with its image and binary mask, in file order."""
    folder = Path(folder)
    csv_path = folder / "captions.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path} not found: a benchmark folder needs images/, masks/ and captions.csv")
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    missing = {"image", "split", "caption"} - set(rows[0] if rows else {})
    if missing:
        raise ValueError(f"{csv_path}: missing columns {sorted(missing)} (need image, split, caption)")
    out, seen = [], set()
    for row in rows:
        fname = row["image"].strip()
        name = Path(fname).stem
        if name in seen:
            raise ValueError(f"{csv_path}: image {fname} is listed twice (a split must never share images)")
        seen.add(name)
        img = _read_png(folder / "images" / fname)
        if img.ndim == 3 and img.shape[-1] == 4:
            img = img[..., :3]
        mask = _read_png(folder / "masks" / fname)
        if mask.ndim == 3:
            mask = mask[..., 0]
        if mask.shape != img.shape[:2]:
            raise ValueError(f"{fname}: mask shape {mask.shape} != image shape {img.shape[:2]}")
        out.append(SegImage(name, row["split"].strip().lower(), row["caption"], img, (mask > 0).astype(np.uint8)))
    return out


def dihedral_views(row: SegImage, n: int) -> list[SegImage]:
    """The first ``n`` (1..8) dihedral views of an image and its mask (training/augment.py's
    ``D4_VIEWS``: quarter turns, then the same with a flip). View 0 is the row itself. The
    encoder embeds each view, so the decoder sees turned nuclei the way the encoder really
    encodes them (turning a cached embedding does not give that: the encoder is not
    rotation-equivariant)."""
    if not 1 <= n <= len(D4_VIEWS):
        raise ValueError(f"views must be between 1 and {len(D4_VIEWS)}, got {n}")
    return [SegImage(row.name + view_suffix(geo), row.split, row.caption, image_view(row.image, geo),
                     image_view(row.mask, geo)) for geo in D4_VIEWS[:n]]


def by_split(rows: list[SegImage], split: str) -> list[SegImage]:
    return [r for r in rows if r.split == split]


def labelled_subset(names: list[str], fraction: float, seed: int = 0) -> list[str]:
    """A fixed-seed draw of ``round(fraction * N)`` names (at least 1), independent of the
    order the names come in; returned sorted."""
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    pool = sorted(set(names))
    if not pool:
        raise ValueError("no training images to draw a labelled subset from")
    n = max(1, int(round(fraction * len(pool))))
    idx = np.random.default_rng(seed).permutation(len(pool))[:n]
    return sorted(pool[i] for i in idx)
