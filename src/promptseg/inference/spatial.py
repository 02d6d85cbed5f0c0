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
from scipy import ndimage

from ..fsutil import array_sha256
from ..io.normalise import hwc_view
from ..model.backbones.litemedsam import TILE, LiteMedSAMBackbone
from ..model.click_head import load_click_head
from ..model.spatial import ViewKeys, spatial_decoder
from .click_edit import edit_shown
from .prompt_checks import check_box, check_points  # noqa: F401 (part of this module's API)

Rect = tuple[int, int, int, int]        # row0, col0, row1, col1 (exclusive end)
BOX_MARGIN = 0.25      # zoom crop margin around a box, as a fraction of its longer side
CLICK_WINDOW = 256     # zoom crop side (image pixels) around a first click
CLICK_BOX_PAD = 0.05   # margin of the box around the click head's region, as a fraction of its longer side
CLICK_CANDIDATES = ("blend", "loose", "box", "head")   # the click answers, the default first
LOOSE_BOX_PAD = 0.5    # the loose candidate's box margin around the click head's region (a larger object)
LOOSE_EDGE_RATIO = 1.8  # one click: the loose answer leads where its border's image gradient is this
                        # many times the blend's (it follows a real boundary; scripts/click_scale_study.py)
KEYED_VIEWS = 8        # the most recent views whose prepared decoder keys are kept
ZOOM_SIDE = 192        # input side of a box's zoom view, below the encoder's own: a faster embedding
                       # at the same box Dice (docs/benchmarks.md, "Prompts")


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
    keys: ViewKeys | None = None  # the decoder's prompt-independent work, kept for recent views only
    edges: np.ndarray | None = None  # gradient of the view's image pixels, made at its first click


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


def medsam_input(pixels: np.ndarray, rect: Rect, side: int = TILE) -> tuple[torch.Tensor, float]:
    """(1, 3, side, side) MedSAM-style input of the rectangle and its scale (frame pixels per
    image pixel)."""
    r0, c0, r1, c1 = rect
    crop = pixels[r0:r1, c0:c1].astype(np.float32)
    lo, hi = float(crop.min()), float(crop.max())
    crop = (crop - lo) / max(hi - lo, 1e-8)
    x = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None]
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    h, w = crop.shape[:2]
    scale = side / max(h, w)
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=scale < 1)
    return F.pad(x, (0, side - nw, 0, side - nh)).contiguous(), scale


class SpatialSegmenter:
    """Box and click segmentation of the current image; the view embeddings are cached."""

    def __init__(self, device: str = "cpu", cache_size: int = 64, zoom_side: int = ZOOM_SIDE):
        self.device = device
        # the input side of a box's zoom view; a smaller one embeds faster, its embedding resized
        # to the decoder's grid
        self.zoom_side = zoom_side
        self.encoder = LiteMedSAMBackbone(pretrained=True).to(device).eval()
        self.box_decoder = spatial_decoder().to(device)
        self.click_head = load_click_head().to(device)
        self._cache: OrderedDict[tuple[str, Rect, int], _View] = OrderedDict()
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
    def view(self, rect: Rect, side: int = TILE) -> _View:
        """The embedding of ``rect`` from a ``side``-pixel input (cached by image hash, rectangle
        and side)."""
        rect = tuple(int(v) for v in rect)
        key = (self._sha, rect, side)
        hit = self._cache.get(key)
        if hit is None:
            x, scale = medsam_input(self._pixels, rect, side)
            hit = _View(rect, scale * TILE / side, self.encoder.embed_resized(x.to(self.device)))
            self._cache[key] = hit
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        if hit.keys is None:
            self._keys(hit)
            for old in list(self._cache.values())[:-KEYED_VIEWS]:
                old.keys = None
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
    @staticmethod
    def _frame_size(v: _View) -> tuple[int, int]:
        """The rows and columns of the 256 frame that hold the view's image (the rest is padding)."""
        r0, c0, r1, c1 = v.rect
        return max(1, int(round((r1 - r0) * v.scale))), max(1, int(round((c1 - c0) * v.scale)))

    def _view_part(self, logits: torch.Tensor, v: _View) -> torch.Tensor:
        """(M, rows, cols) view-frame logits -> (M, h, w) logits over the view's rectangle of the image."""
        r0, c0, r1, c1 = v.rect
        nh, nw = self._frame_size(v)
        return F.interpolate(logits[None, :, :nh, :nw], size=(r1 - r0, c1 - c0), mode="bilinear",
                             align_corners=False)[0].float()

    def _to_image(self, logits: torch.Tensor, v: _View, fill: float = -20.0) -> np.ndarray:
        """(M, 256, 256) view logits -> (M, H, W) image logits (``fill`` outside the view)."""
        r0, c0, r1, c1 = v.rect
        out = torch.full((logits.shape[0], *self.shape), fill, dtype=torch.float32)
        out[:, r0:r1, c0:c1] = self._view_part(logits, v).cpu()
        return out.numpy()

    def _view_box(self, box, v: _View) -> list[float]:
        """``box`` (row0, col0, row1, col1) as x0 y0 x1 y1 of the view's 256 frame."""
        r0, c0, r1, c1 = box
        vr, vc = v.rect[0], v.rect[1]
        return [(c0 - vc) * v.scale, (r0 - vr) * v.scale, (c1 - vc) * v.scale, (r1 - vr) * v.scale]

    @torch.no_grad()
    def decode_views(self, box, views: list[_View], mask_logits: torch.Tensor | None = None, crop: bool = True
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """``box`` on each of ``views`` in one decoder call: (V, 1, rows, cols) logits that cover
        every view's image part of the 256 frame (all of it without ``crop`` or with
        ``mask_logits``), (V,) scores."""
        b = torch.tensor([self._view_box(box, v) for v in views], dtype=torch.float32,
                         device=self.device).clamp(0, TILE - 1)
        if mask_logits is not None:
            emb = torch.cat([v.emb for v in views]) if len(views) > 1 else views[0].emb
            logits, iou = self.box_decoder(emb, boxes=b, mask_logits=mask_logits)
        else:
            size = tuple(max(self._frame_size(v)[i] for v in views) for i in (0, 1)) if crop else None
            logits, iou = self.box_decoder(ViewKeys.cat([self._keys(v) for v in views]), boxes=b, size=size)
        return logits, iou[:, 0]

    def _keys(self, v: _View) -> ViewKeys:
        if v.keys is None:
            v.keys = self.box_decoder.prepare(v.emb)
        return v.keys

    @torch.no_grad()
    def segment_box(self, box, *, zoom: bool = True, margin: float = BOX_MARGIN,
                    refine: bool = False) -> SpatialMask:
        """The object inside ``box``: decoded on the whole image and, with ``zoom``, on a crop of
        the box plus ``margin`` at the encoder's resolution, both in one decoder call; the two
        answers' logits are averaged over the crop. ``refine``: a second pass with the first
        answer as the dense prompt."""
        b = check_box(box, self.shape)
        views = [self.view(self.full_rect())]
        if zoom:
            rect = box_rect(b, self.shape, margin)
            if rect != views[0].rect:
                views.append(self.view(rect, self.zoom_side))
        logits, scores = self.decode_views(b, views, crop=not refine)
        if refine:
            logits, scores = self.decode_views(b, views, mask_logits=logits)
        out = self._view_part(logits[0], views[0])[0].cpu()      # the whole image's view
        for v, lg in zip(views[1:], logits[1:]):
            r0, c0, r1, c1 = v.rect
            part = out[r0:r1, c0:c1]
            part.add_(self._view_part(lg, v)[0].cpu()).mul_(0.5)
        return SpatialMask(out.numpy(), float(np.mean(scores.tolist())))

    def segment_points(self, points, labels=None, *, shown: np.ndarray | None = None,
                       window: int = CLICK_WINDOW) -> list[SpatialMask]:
        """The object under the clicks, as candidates best first (see :meth:`click_masks`)."""
        return list(self.click_masks(points, labels, shown=shown, window=window).values())

    @torch.no_grad()
    def click_masks(self, points, labels=None, *, shown: np.ndarray | None = None,
                    window: int = CLICK_WINDOW) -> dict[str, SpatialMask]:
        """The object under the clicks, as named candidates best first.

        All clicks are decoded on one cached view: a ``window``-pixel square around the first
        inside click, or the whole image if it is smaller. The click head grows the clicked
        object on the view's features (inside and outside clicks both count); the box decoder
        then decodes that coarse mask's bounding box. Candidates: the two answers blended
        (probabilities averaged); a larger object, the box decoder's answer to that box with a
        wide margin (loose); the box decoder's answer; the click head's answer. One click alone
        does not say the object's scale: the loose answer leads there when its border follows a
        much sharper image edge than the blend's.

        ``shown``: the (H, W) mask on screen before the last click. That click then corrects it
        near the click only (inference/click_edit.py), and the edited mask leads the candidates
        with the fresh answer's score (the decoder predicts none for the edit)."""
        pts, lab = check_points(points, labels, self.shape)
        if shown is not None and np.shape(shown) != self.shape:
            raise ValueError(f"the shown mask is {np.shape(shown)}, the image {self.shape}")
        v = self.view(self.click_rect(pts[lab == 1][0], window))
        answers = self.click_answers(pts, lab, v)
        names = list(CLICK_CANDIDATES)
        logits = self._to_image(torch.stack([answers[n][0] for n in names]), v)
        masks = {n: SpatialMask(_keep_clicked(lg, pts[lab == 1]), answers[n][1]) for n, lg in zip(names, logits)}
        if len(pts) == 1 and self._loose_leads(masks, v):
            names[:2] = names[1::-1]
        out = {n: masks[n] for n in names}
        first = masks[names[0]]
        edited = None if shown is None or len(pts) < 2 else edit_shown(np.asarray(shown, bool), first.mask,
                                                                          pts[-1], int(lab[-1]))
        if edited is not None:   # the fresh answer's logits where it agrees with the edit
            lg = np.where(edited, np.maximum(first.logits, 1.0), np.minimum(first.logits, -1.0))
            out = {"edited": SpatialMask(lg.astype(np.float32), first.score), **out}
        return out

    def _loose_leads(self, masks: dict[str, SpatialMask], v: _View) -> bool:
        """Whether the loose mask's border gradient is ``LOOSE_EDGE_RATIO`` times the blend's,
        both measured on the image pixels of the view."""
        r0, c0, r1, c1 = v.rect
        if v.edges is None:
            v.edges = _gradient(self._pixels[r0:r1, c0:c1])
        blend, loose = (_border_mean(v.edges, masks[k].mask[r0:r1, c0:c1]) for k in ("blend", "loose"))
        return loose >= LOOSE_EDGE_RATIO * blend > 0

    def click_answers(self, pts: np.ndarray, lab: np.ndarray, v: _View) -> dict[str, tuple[torch.Tensor, float]]:
        """(256, 256) view-frame logits and a score per route, for checked row, col clicks."""
        xy = torch.tensor([[(c - v.rect[1]) * v.scale, (r - v.rect[0]) * v.scale] for r, c in pts],
                          dtype=torch.float32, device=self.device)
        inside = torch.as_tensor(lab == 1, device=self.device)

        def group(sel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            p = xy[sel][None] if sel.any() else torch.zeros(1, 1, 2, device=self.device)
            return p, torch.ones(p.shape[:2], dtype=torch.bool, device=self.device) & sel.any()

        pos, pv = group(inside)
        neg, nv = group(~inside)
        coarse = F.interpolate(self.click_head(v.emb, pos, pv, neg, nv), size=(TILE, TILE), mode="bilinear",
                               align_corners=False)[0, 0]
        region = _clicked_region(coarse.cpu().numpy() > 0, xy[inside].cpu().numpy())
        boxes = torch.tensor([_padded_box(region, CLICK_BOX_PAD), _padded_box(region, LOOSE_BOX_PAD)],
                             dtype=torch.float32, device=self.device).clamp(0, TILE - 1)
        keys = self._keys(v)
        box_lg, iou = self.box_decoder(ViewKeys.cat([keys, keys]), boxes=boxes)
        loose_lg, box_lg = box_lg[1, 0], box_lg[0, 0]
        blend = torch.logit(0.5 * (torch.sigmoid(box_lg) + torch.sigmoid(coarse)), eps=1e-6)
        head_score = float(torch.sigmoid(coarse)[torch.from_numpy(region)].mean())
        return {"blend": (blend, 0.5 * (float(iou[0, 0]) + head_score)), "loose": (loose_lg, float(iou[1, 0])),
                "box": (box_lg, float(iou[0, 0])), "head": (coarse, head_score)}


def _padded_box(region: np.ndarray, pad: float) -> list[float]:
    """x0 y0 x1 y1 of ``region``'s bounding box with a margin of ``pad`` of its longer side."""
    rr, cc = np.nonzero(region)
    m = max(2.0, pad * max(np.ptp(rr), np.ptp(cc)))
    return [cc.min() - m, rr.min() - m, cc.max() + m, rr.max() + m]


def _gradient(pixels: np.ndarray) -> np.ndarray:
    """(h, w) gradient magnitude of (h, w, C) pixels, min-max scaled and lightly smoothed."""
    g = pixels[..., :3].astype(np.float32).mean(-1)
    g = ndimage.gaussian_filter((g - g.min()) / max(float(np.ptp(g)), 1e-6), 1.0)
    return np.hypot(ndimage.sobel(g, 0), ndimage.sobel(g, 1))


def _border_mean(values: np.ndarray, mask: np.ndarray) -> float:
    """Mean of ``values`` on the mask's inner border (0 for an empty mask)."""
    border = mask & ~ndimage.binary_erosion(mask)
    return float(values[border].mean()) if border.any() else 0.0


def _clicked_region(mask: np.ndarray, pos_xy: np.ndarray) -> np.ndarray:
    """The connected pieces of ``mask`` under the inside clicks ((x, y) of the view frame);
    a small square around the clicks where the mask holds none of them."""
    lab, _ = ndimage.label(mask)
    ids = {int(lab[min(int(y), TILE - 1), min(int(x), TILE - 1)]) for x, y in pos_xy} - {0}
    if ids:
        return np.isin(lab, list(ids))
    out = np.zeros_like(mask)
    (x0, y0), (x1, y1) = pos_xy.min(0).astype(int), pos_xy.max(0).astype(int)
    out[max(y0 - 4, 0):y1 + 5, max(x0 - 4, 0):x1 + 5] = True
    return out


def _keep_clicked(logits: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Image logits with the pieces that hold no inside click (row, col) set outside."""
    lab, n = ndimage.label(logits > 0)
    if n <= 1:
        return logits
    ids = {int(lab[int(r), int(c)]) for r, c in pos} - {0}
    if not ids:
        return logits
    return np.where((lab > 0) & ~np.isin(lab, list(ids)), np.minimum(logits, -1.0), logits).astype(np.float32)
