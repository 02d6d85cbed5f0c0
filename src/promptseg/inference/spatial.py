"""Boxes and clicks -> masks on any image, with LiteMedSAM's frozen spatial path.

Each view (the whole image, or a zoom crop around a box or a click) is fed to the encoder as
MedSAM does: min-max scaled, longest side resized to 256, zero padded. View embeddings are
cached by image hash + view rectangle, so further prompts on a view cost only the decoder.
Coordinates follow :class:`promptseg.Predictor`: boxes (row0, col0, row1, col1), clicks (row, col).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..fsutil import array_sha256
from ..io.normalise import hwc_view
from ..model.backbones.litemedsam import TILE, LiteMedSAMBackbone
from ..model.spatial import spatial_decoder

Rect = tuple[int, int, int, int]        # row0, col0, row1, col1 (exclusive end)
BOX_MARGIN = 0.25      # zoom crop margin around a box, as a fraction of its longer side
CLICK_WINDOW = 256     # zoom crop side (image pixels) around a first click
CLICK_HALF_SIZES = (5, 10, 20, 40, 80)   # half-sides (256-frame pixels) of the boxes tried around clicks


@dataclass
class SpatialMask:
    """One object from a box or clicks: ``logits`` (H, W) float32, ``score`` predicted IoU."""
    logits: np.ndarray
    score: float

    @property
    def mask(self) -> np.ndarray:
        return self.logits > 0


@dataclass
class _View:
    rect: Rect
    scale: float                 # 256-frame pixels per image pixel
    emb: torch.Tensor            # (1, 256, 64, 64)


# -- validation (before anything is cached or changed) -----------------------------------------
def check_box(box, shape: tuple[int, int]) -> tuple[float, float, float, float]:
    """A validated (row0, col0, row1, col1) box clipped to the image; ValueError naming the problem."""
    try:
        r0, c0, r1, c1 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(-1))
    except (TypeError, ValueError):
        raise ValueError(f"a box must be 4 numbers (row0, col0, row1, col1), got {box!r}") from None
    if not all(np.isfinite(v) for v in (r0, c0, r1, c1)):
        raise ValueError(f"box {box!r} holds NaN or Inf")
    if r1 < r0 or c1 < c0:
        raise ValueError(f"box {box!r} is inverted: it needs row1 >= row0 and col1 >= col0")
    if r1 == r0 or c1 == c0:
        raise ValueError(f"box {box!r} has zero size: row1 - row0 and col1 - col0 must be > 0")
    h, w = shape
    if r1 < 0 or c1 < 0 or r0 > h - 1 or c0 > w - 1:
        raise ValueError(f"box {box!r} lies outside the image ({h}x{w} pixels)")
    return max(r0, 0.0), max(c0, 0.0), min(r1, h - 1.0), min(c1, w - 1.0)


def check_points(points, labels, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Validated (P, 2) row, col clicks and (P,) labels (1 inside, 0 outside)."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.size == 0 or pts.ndim not in (1, 2) or pts.shape[-1] != 2:
        raise ValueError(f"clicks must be (P, 2) row, col pixels, got shape {pts.shape}")
    pts = pts.reshape(-1, 2)
    if not np.isfinite(pts).all():
        raise ValueError("a click holds NaN or Inf")
    lab = np.ones(len(pts), np.int64) if labels is None else np.asarray(labels).reshape(-1)
    if len(lab) != len(pts):
        raise ValueError(f"{len(pts)} clicks but {len(lab)} click labels")
    if not np.isin(lab, (0, 1)).all():
        raise ValueError(f"click labels must be 1 (inside) or 0 (outside), got {sorted(set(lab.tolist()))}")
    h, w = shape
    out = (pts[:, 0] < 0) | (pts[:, 1] < 0) | (pts[:, 0] > h - 1) | (pts[:, 1] > w - 1)
    if out.any():
        i = int(np.argmax(out))
        raise ValueError(f"click {i} at (row {pts[i, 0]:g}, col {pts[i, 1]:g}) lies outside the image "
                         f"({h}x{w} pixels)")
    if not (lab == 1).any():
        raise ValueError("at least one click must be inside the object (label 1)")
    return pts, lab.astype(np.int64)


# -- views ---------------------------------------------------------------------------------------
def square_rect(cr: float, cc: float, side: float, shape: tuple[int, int]) -> Rect:
    """A square of ``side`` centred at (cr, cc), shifted into the image and cut to it."""
    h, w = shape
    s = int(np.ceil(side))
    out = []
    for c, n in ((cr, h), (cc, w)):
        lo = int(round(c - s / 2))
        lo = min(max(lo, 0), max(n - s, 0))
        out.append((lo, min(lo + s, n)))
    return out[0][0], out[1][0], out[0][1], out[1][1]


def box_rect(box: tuple[float, float, float, float], shape: tuple[int, int], margin: float) -> Rect:
    r0, c0, r1, c1 = box
    side = max(r1 - r0, c1 - c0) * (1 + 2 * margin) + 1
    return square_rect((r0 + r1) / 2, (c0 + c1) / 2, max(side, 16), shape)


def medsam_input(pixels: np.ndarray, rect: Rect) -> tuple[torch.Tensor, float]:
    """(1, 3, 256, 256) MedSAM-style input of the rectangle and its scale (256-frame per pixel)."""
    r0, c0, r1, c1 = rect
    crop = pixels[r0:r1, c0:c1].astype(np.float32)
    lo, hi = float(crop.min()), float(crop.max())
    crop = (crop - lo) / max(hi - lo, 1e-8)
    x = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None]
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    h, w = crop.shape[:2]
    scale = TILE / max(h, w)
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=scale < 1)
    return F.pad(x, (0, TILE - nw, 0, TILE - nh)).contiguous(), scale


class SpatialSegmenter:
    """Box and click segmentation of the current image; the view embeddings are cached."""

    def __init__(self, device: str = "cpu", cache_size: int = 64):
        self.device = device
        self.encoder = LiteMedSAMBackbone(pretrained=True).to(device).eval()
        self.box_decoder = spatial_decoder().to(device)
        self._cache: OrderedDict[tuple[str, Rect], _View] = OrderedDict()
        self._cache_size = cache_size
        self._pixels: np.ndarray | None = None
        self._sha = ""

    def set_image(self, image: np.ndarray, sha: str | None = None) -> None:
        arr = hwc_view(image)
        self._sha = sha or array_sha256(np.asarray(image))
        self._pixels = arr

    @property
    def shape(self) -> tuple[int, int]:
        if self._pixels is None:
            raise RuntimeError("call set_image(image) before a box or click")
        return self._pixels.shape[:2]

    @torch.no_grad()
    def view(self, rect: Rect) -> _View:
        """The embedding of ``rect`` (cached by image hash + rectangle)."""
        key = (self._sha, tuple(int(v) for v in rect))
        hit = self._cache.get(key)
        if hit is None:
            x, scale = medsam_input(self._pixels, rect)
            hit = _View(key[1], scale, self.encoder(x.to(self.device)))
            self._cache[key] = hit
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        return hit

    def full_rect(self) -> Rect:
        h, w = self.shape
        return 0, 0, h, w

    def click_rect(self, click, window: int = CLICK_WINDOW) -> Rect:
        """The view of a first click: a ``window`` square around it, or the whole image if smaller."""
        h, w = self.shape
        if max(h, w) <= window * 1.25:
            return self.full_rect()
        return square_rect(float(click[0]), float(click[1]), window, self.shape)

    # -- decoding -------------------------------------------------------------------------------
    def _to_image(self, logits: torch.Tensor, v: _View, fill: float = -20.0) -> np.ndarray:
        """(M, 256, 256) view logits -> (M, H, W) image logits (``fill`` outside the view)."""
        r0, c0, r1, c1 = v.rect
        nh, nw = max(1, int(round((r1 - r0) * v.scale))), max(1, int(round((c1 - c0) * v.scale)))
        part = F.interpolate(logits[None, :, :nh, :nw], size=(r1 - r0, c1 - c0), mode="bilinear",
                             align_corners=False)[0]
        out = np.full((logits.shape[0], *self.shape), fill, np.float32)
        out[:, r0:r1, c0:c1] = part.float().cpu().numpy()
        return out

    @torch.no_grad()
    def decode_box(self, box, v: _View, mask_logits: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
        r0, c0, r1, c1 = box
        vr, vc = v.rect[0], v.rect[1]
        b = torch.tensor([[(c0 - vc) * v.scale, (r0 - vr) * v.scale, (c1 - vc) * v.scale,
                           (r1 - vr) * v.scale]], dtype=torch.float32, device=self.device).clamp(0, TILE - 1)
        logits, iou = self.box_decoder(v.emb, boxes=b, mask_logits=mask_logits)
        return logits[0], float(iou[0, 0])

    @torch.no_grad()
    def segment_box(self, box, *, zoom: bool = True, margin: float = BOX_MARGIN,
                    refine: bool = False) -> SpatialMask:
        """The object inside ``box``: decoded on the whole image and, with ``zoom``, on a crop of
        the box plus ``margin`` at the encoder's resolution; the two answers' logits are averaged
        where both exist. ``refine``: a second pass with the first answer as the dense prompt."""
        b = check_box(box, self.shape)
        views = [self.view(self.full_rect())]
        if zoom:
            rect = box_rect(b, self.shape, margin)
            if rect != views[0].rect:
                views.append(self.view(rect))
        total, count, scores = 0.0, 0.0, []
        for v in views:
            lg, s = self.decode_box(b, v)
            if refine:
                lg, s = self.decode_box(b, v, mask_logits=lg[None, :1])
            img = self._to_image(lg[:1], v, fill=0.0)[0]
            inside = np.zeros(self.shape, np.float32)
            inside[v.rect[0]:v.rect[2], v.rect[1]:v.rect[3]] = 1.0
            total, count = total + img * inside, count + inside
            scores.append(s)
        logits = np.where(count > 0, total / np.maximum(count, 1), -20.0).astype(np.float32)
        return SpatialMask(logits, float(np.mean(scores)))

    @torch.no_grad()
    def segment_points(self, points, labels=None, *, window: int = CLICK_WINDOW) -> list[SpatialMask]:
        """The object under the clicks, as candidates best first.

        LiteMedSAM's decoder answers boxes, not clicks, so clicks become boxes: boxes of several
        sizes around the inside clicks are decoded at once on a ``window``-pixel view around the
        first inside click (the whole image if smaller); the answers that hold the most inside
        clicks and leave out the most outside ones come first, then by predicted IoU times
        stability. The best answer's own bounding box (+ margin) is decoded again as a box, as
        :meth:`segment_box` does, and outside clicks cut off the pixels nearer to them."""
        pts, lab = check_points(points, labels, self.shape)
        pos, neg = pts[lab == 1], pts[lab == 0]
        rect = self.click_rect(pos[0], window)
        v = self.view(rect)
        r0, c0 = pos.min(0)
        r1, c1 = pos.max(0)
        boxes = []
        for half in CLICK_HALF_SIZES:
            d = half / v.scale
            boxes.append((max(r0 - d, rect[0]), max(c0 - d, rect[1]), min(r1 + d, rect[2] - 1),
                          min(c1 + d, rect[3] - 1)))
        logits, iou = self._decode_boxes(boxes, v)
        cands = []
        for lg, q in zip(logits, iou):
            m = lg > 0
            hits = sum(bool(m[int(r), int(c)]) for r, c in pos) + sum(not m[int(r), int(c)] for r, c in neg)
            stab = float((lg > 1).sum() / max((lg > -1).sum(), 1))
            cands.append((hits, q * stab, lg))
        # answers that respect the most clicks first, then by predicted IoU times stability
        cands.sort(key=lambda c: (-c[0], -c[1]))
        out, seen = [], []
        for hits, score, lg in cands:
            m = lg > 0
            if not m.any() or any(_iou(m, s) > 0.9 for s in seen):
                continue
            seen.append(m)
            if not out:   # the best answer's own box, decoded again (zoomed) as a box prompt
                rr, cc = np.nonzero(m)
                pad = max(2.0, 0.05 * max(np.ptp(rr), np.ptp(cc)))
                lg = self.segment_box((rr.min() - pad, cc.min() - pad, rr.max() + pad, cc.max() + pad)).logits
            out.append(SpatialMask(_cut_nearer_outside(lg, pos, neg), float(score)))
        return out[:3] or [SpatialMask(cands[0][2], 0.0)]

    def _decode_boxes(self, boxes, v: _View) -> tuple[np.ndarray, np.ndarray]:
        """Several boxes on one view in one decoder call: (B, H, W) image logits, (B,) IoU."""
        vr, vc = v.rect[0], v.rect[1]
        b = torch.tensor([[(c0 - vc) * v.scale, (r0 - vr) * v.scale, (c1 - vc) * v.scale, (r1 - vr) * v.scale]
                          for r0, c0, r1, c1 in boxes], dtype=torch.float32, device=self.device).clamp(0, TILE - 1)
        logits, iou = self.box_decoder(v.emb.expand(len(boxes), -1, -1, -1), boxes=b)
        return self._to_image(logits[:, 0], v), iou[:, 0].cpu().numpy()


def _cut_nearer_outside(logits: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Outside clicks cut the mask: pixels nearer to an outside click than to every inside
    click are set outside (the box decoder itself does not take clicks)."""
    if len(neg) == 0:
        return logits
    rr, cc = np.mgrid[:logits.shape[0], :logits.shape[1]]

    def nearest(p: np.ndarray) -> np.ndarray:
        return np.min([(rr - r) ** 2 + (cc - c) ** 2 for r, c in p], axis=0)

    return np.where(nearest(neg) < nearest(pos), np.minimum(logits, -1.0), logits).astype(np.float32)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))
