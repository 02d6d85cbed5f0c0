"""VESSA-style exemplar assistant: a template bank of accepted labels turned into prompts.

For a query (an unlabelled image, or a labelled one with itself left out):
1. retrieve the k accepted images whose global feature (mean tile embedding) is closest;
2. average their class prototypes (mask-pooled embedding features) and background prototypes;
3. match every token of the query to them: s_k = cos(f, proto_k) - cos(f, proto_bg);
4. turn the peaks of s_k into positive points, its minima into negative points, its
   support into a box (only when compact) and s_k itself into a coarse dense mask prompt;
the prompt decoder then decodes text + points + box + exemplar tokens + mask.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .types import TrainItem


@dataclass
class Template:
    name: str
    global_feature: torch.Tensor            # (C,) L2-normalised
    prototypes: dict[int, torch.Tensor]     # global class index -> (C,) mean feature
    background: torch.Tensor | None         # (C,)


@dataclass
class ExemplarPrompts:
    points: torch.Tensor        # (P, 2) xy in crop pixels (4 per token)
    point_labels: torch.Tensor  # (P,) 1 positive, 0 negative, -1 padding
    box: torch.Tensor           # (4,) x0 y0 x1 y1 in crop pixels, NaN = no box
    mask: torch.Tensor          # (1, 4h, 4w) coarse logits
    exemplars: torch.Tensor     # (E, C) prototypes of the retrieved templates
    exemplar_mask: torch.Tensor  # (E,) bool


def global_feature(emb: torch.Tensor) -> torch.Tensor:
    """(T, C, h, w) or (C, h, w) -> (C,) L2-normalised mean feature."""
    return F.normalize(emb.float().reshape(-1, *emb.shape[-3:]).mean(dim=(0, 2, 3)), dim=0)


def template_from_item(item: TrainItem) -> Template:
    emb = item.emb.float()                                   # (T, C, g, g)
    g = emb.shape[-1]
    lab = item.labels                                        # (T, tile, tile) local ids
    feats = emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1])
    protos = {}
    on_grid = {}
    for local, k in enumerate(item.classes, start=1):
        frac = F.adaptive_avg_pool2d((lab == local).float()[:, None], g)[:, 0].reshape(-1)
        on_grid[k] = frac
        if frac.sum() > 0:
            protos[k] = (feats * frac[:, None]).sum(0) / frac.sum()
    bg_frac = F.adaptive_avg_pool2d((lab == 0).float()[:, None], g)[:, 0].reshape(-1)
    background = (feats * bg_frac[:, None]).sum(0) / bg_frac.sum() if bg_frac.sum() > 0 else None
    return Template(item.name, global_feature(emb), protos, background)


class TemplateBank:
    def __init__(self, templates: list[Template]):
        self.templates = templates
        self._globals = torch.stack([t.global_feature for t in templates]) if templates else None

    @classmethod
    def from_items(cls, items: list[TrainItem]) -> "TemplateBank":
        return cls([template_from_item(it) for it in items])

    def __len__(self) -> int:
        return len(self.templates)

    def retrieve(self, query: torch.Tensor, k: int, exclude: str | None = None) -> list[Template]:
        """The k templates with the highest cosine of global features (``exclude`` by name,
        unless it is the only one)."""
        if self._globals is None:
            return []
        sims = self._globals @ query.float()
        order = torch.argsort(sims, descending=True).tolist()
        picked = [self.templates[i] for i in order if self.templates[i].name != exclude]
        return (picked or [self.templates[i] for i in order])[:max(1, k)]

    def prompts(self, crop: torch.Tensor, cls: int, templates: list[Template], n_pos: int = 3, n_neg: int = 2,
                mask_scale: float = 10.0, max_box_fraction: float = 0.6) -> ExemplarPrompts | None:
        """Prompts for class ``cls`` on an embedding crop (C, h, w); None when no retrieved
        template has that class."""
        protos = [t.prototypes[cls] for t in templates if cls in t.prototypes]
        if not protos:
            return None
        bgs = [t.background for t in templates if t.background is not None]
        f = F.normalize(crop.float(), dim=0)
        fg = F.normalize(torch.stack(protos).mean(0), dim=0)
        s = torch.einsum("chw,c->hw", f, fg)
        if bgs:
            s = s - torch.einsum("chw,c->hw", f, F.normalize(torch.stack(bgs).mean(0), dim=0))
        return similarity_prompts(s, torch.stack(protos), n_pos, n_neg, mask_scale, max_box_fraction)


def similarity_prompts(s: torch.Tensor, exemplars: torch.Tensor, n_pos: int = 3, n_neg: int = 2,
                       mask_scale: float = 10.0, max_box_fraction: float = 0.6) -> ExemplarPrompts:
    """Points at the local maxima (positive) and minima (negative) of a token-grid similarity
    map s (h, w), a box around s > 0 when it is compact, and s as a coarse mask prompt."""
    h, w = s.shape
    peaks = (s == F.max_pool2d(s[None, None], 3, 1, 1)[0, 0]) & (s > 0)
    pos = _top_locations(torch.where(peaks, s, torch.full_like(s, -torch.inf)), n_pos)
    neg = _top_locations(-s, n_neg)
    locs = pos + neg
    pts = torch.full((n_pos + n_neg, 2), 0.0)
    labels = torch.full((n_pos + n_neg,), -1, dtype=torch.long)
    for i, (y, x) in enumerate(locs):
        pts[i] = torch.tensor([x * 4 + 2.0, y * 4 + 2.0])
        labels[i] = 1 if i < len(pos) else 0
    box = torch.full((4,), float("nan"))
    support = s > 0
    if support.any() and support.float().mean() <= max_box_fraction:
        ys, xs = support.nonzero(as_tuple=True)
        box = torch.tensor([xs.min() * 4.0, ys.min() * 4.0, xs.max() * 4.0 + 3, ys.max() * 4.0 + 3])
    mask = F.interpolate((mask_scale * s)[None, None], scale_factor=4.0, mode="bilinear", align_corners=False)[0]
    return ExemplarPrompts(pts, labels, box, mask, exemplars.float(), torch.ones(len(exemplars), dtype=torch.bool))


def _top_locations(score: torch.Tensor, n: int) -> list[tuple[int, int]]:
    flat = score.reshape(-1)
    vals, idx = torch.topk(flat, min(n, flat.numel()))
    w = score.shape[-1]
    return [(int(i) // w, int(i) % w) for v, i in zip(vals, idx) if torch.isfinite(v)]
