"""Training the click head (model/click_head.py) on frozen LiteMedSAM view embeddings.

Clicks are simulated as interactive-segmentation training does (SAM, MedSAM2): the first
click inside the object, biased to its interior; then corrective clicks, each at the most
interior point of an error of the head's own answer to the clicks before it (inside where the
object was missed, outside where the answer spills over). Only the small head learns; the
encoder's embeddings are computed once per view and kept.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..model.backbones.litemedsam import TILE
from ..model.click_head import ClickHead
from ..model.spatial import GRID

MAX_CLICKS = 4


@dataclass
class ClickView:
    """One encoder view: its embedding (256, 64, 64) and its objects' masks (N, 256, 256) bool
    in the view's 256² input frame; ``sources`` names each object's kind (sampling groups)."""
    emb: torch.Tensor
    masks: np.ndarray
    sources: tuple[str, ...] | None = None


@dataclass
class ClickTrainConfig:
    steps: int = 600
    batch: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    pool: int = 2
    balanced: bool = True          # each source kind equally often, sizes spread evenly within it
    shares: dict[str, float] | None = None   # balanced: relative share per source kind (default equal)


def view_masks(masks: list[np.ndarray], scale: float) -> np.ndarray:
    """Image-frame masks of one view -> (N, 256, 256) bool masks in its zero-padded input frame."""
    out = np.zeros((len(masks), TILE, TILE), bool)
    for i, m in enumerate(masks):
        h, w = m.shape
        nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
        t = torch.from_numpy(m.astype(np.float32))[None, None]
        out[i, :nh, :nw] = F.interpolate(t, size=(nh, nw), mode="bilinear", align_corners=False)[0, 0].numpy() > 0.5
    return out


def _interior(mask: np.ndarray, rng: np.random.Generator, biased: bool) -> tuple[float, float]:
    """(x, y) of a click in ``mask``: its most interior pixel, or (``biased``) a random pixel
    at least half as deep as that."""
    d = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    if biased:
        rr, cc = np.nonzero(d >= 0.5 * d.max())
        k = int(rng.integers(len(rr)))
        return float(cc[k]) + 0.5, float(rr[k]) + 0.5
    r, c = np.unravel_index(int(np.argmax(d)), d.shape)
    return float(c) + 0.5, float(r) + 0.5


def corrective_click(pred: np.ndarray, gt: np.ndarray, rng: np.random.Generator | None = None
                     ) -> tuple[tuple[float, float], bool] | None:
    """The next simulated click ((x, y), inside?) on the larger error of ``pred``; None if none."""
    fn, fp = gt & ~pred, pred & ~gt
    if not fn.any() and not fp.any():
        return None
    dfn = ndimage.distance_transform_edt(np.pad(fn, 1))[1:-1, 1:-1].max() if fn.any() else 0.0
    dfp = ndimage.distance_transform_edt(np.pad(fp, 1))[1:-1, 1:-1].max() if fp.any() else 0.0
    err, inside = (fn, True) if dfn >= dfp else (fp, False)
    biased = rng is not None and rng.random() < 0.5
    return _interior(err, rng or np.random.default_rng(0), biased), inside


def _pack(clicks: list[list[tuple[tuple[float, float], bool]]], want: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Clicks of one kind (inside if ``want``) as (B, P, 2) x, y and (B, P) validity."""
    p = max(1, max(sum(c[1] == want for c in cl) for cl in clicks))
    pts = torch.zeros(len(clicks), p, 2)
    valid = torch.zeros(len(clicks), p, dtype=torch.bool)
    for i, cl in enumerate(clicks):
        sel = [xy for xy, inside in cl if inside == want]
        if sel:
            pts[i, :len(sel)] = torch.tensor(sel)
            valid[i, :len(sel)] = True
    return pts, valid


def head_logits(head: ClickHead, emb: torch.Tensor, clicks: list[list[tuple[tuple[float, float], bool]]]) -> torch.Tensor:
    """(B, 1, 64, 64) logits of ``head`` for lists of ((x, y), inside) clicks per item."""
    pos, pv = _pack(clicks, True)
    neg, nv = _pack(clicks, False)
    return head(emb, pos, pv, neg, nv)


SIM = 2      # clicks are simulated on masks subsampled by this factor (distance transforms are costly)


def _loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE on the object's area fraction of each 64-grid cell + soft Dice."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * target).sum((1, 2, 3)) + 1) / (p.sum((1, 2, 3)) + target.sum((1, 2, 3)) + 1)
    return bce + dice.mean()


@dataclass
class _Prepared:
    """Per view: the embedding pooled as the head pools it, masks subsampled for the click
    simulation, and the 64-grid area fractions the loss compares with."""
    emb: torch.Tensor
    sim: np.ndarray
    target: torch.Tensor


def _prepare(view: ClickView, pool: int) -> _Prepared:
    emb = F.avg_pool2d(view.emb.float()[None], pool)[0]
    target = F.avg_pool2d(torch.from_numpy(view.masks).float()[:, None], TILE // GRID)
    return _Prepared(emb, view.masks[:, SIM // 2::SIM, SIM // 2::SIM], target)


def simulate_clicks(head: ClickHead, views: list[_Prepared], picks: list[tuple[int, int]],
                    rng: np.random.Generator) -> list[list[tuple[tuple[float, float], bool]]]:
    """1..MAX_CLICKS clicks per (view, object) pick: interior first, then corrective ones."""
    n_clicks = rng.choice(np.arange(1, MAX_CLICKS + 1), size=len(picks), p=[0.4, 0.25, 0.2, 0.15])
    gts = [views[v].sim[o] for v, o in picks]
    n = gts[0].shape[0]

    def frame(click):
        (x, y), inside = click
        return (x * SIM, y * SIM), inside

    clicks = [[frame((_interior(g, rng, rng.random() < 0.7), True))] for g in gts]
    emb = torch.stack([views[v].emb for v, _ in picks])
    for r in range(1, MAX_CLICKS):
        todo = [i for i in range(len(picks)) if n_clicks[i] > r]
        if not todo:
            break
        with torch.no_grad():
            lg = head_logits(head, emb[todo], [clicks[i] for i in todo])
            up = F.interpolate(lg, size=(n, n), mode="bilinear", align_corners=False)[:, 0].numpy() > 0
        for j, i in enumerate(todo):
            nxt = corrective_click(up[j], gts[i], rng)
            if nxt is not None:
                clicks[i].append(frame(nxt))
    return clicks


def object_weights(views: list[ClickView], objects: list[tuple[int, int]], balanced: bool,
                   shares: dict[str, float] | None = None) -> np.ndarray:
    """Sampling probabilities of ``objects`` ((view, object) pairs): uniform, or (``balanced``)
    each source kind with the same share (or as ``shares`` weighs them), and within it each
    octave of object area likewise."""
    if not balanced:
        return np.full(len(objects), 1.0 / len(objects))
    keys = []
    for v, o in objects:
        src = views[v].sources[o] if views[v].sources else "object"
        keys.append((src, int(np.log2(max(1, int(views[v].masks[o].sum()))))))
    kinds = {k for k, _ in keys}
    cells = {k: sum(1 for c in set(keys) if c[0] == k) for k in kinds}
    count: dict = {}
    for key in keys:
        count[key] = count.get(key, 0) + 1
    share = {k: float((shares or {}).get(k, 1.0)) for k in kinds}
    w = np.array([share[k[0]] / (cells[k[0]] * count[k]) for k in keys])
    return w / w.sum()


def train_click_head(views: list[ClickView], cfg: ClickTrainConfig,
                     log: Callable[[str], None] = print, init: ClickHead | None = None) -> ClickHead:
    """A click head trained on ``views`` (objects drawn as :func:`object_weights` says),
    from ``init``'s weights when given (fine-tuning; its pool is kept)."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    objects = [(v, o) for v, view in enumerate(views) for o in range(len(view.masks)) if view.masks[o].any()]
    if not objects:
        raise ValueError("no objects to train the click head on")
    if cfg.steps < 4:
        raise ValueError(f"the click head needs at least 4 training steps (its warm-up), not {cfg.steps}")
    weights = object_weights(views, objects, cfg.balanced, cfg.shares)
    if init is not None:
        head = ClickHead(**init.cfg)
        head.load_state_dict(init.state_dict())
        head.requires_grad_(True)
    else:
        head = ClickHead(views[0].emb.shape[0], pool=cfg.pool)
    views = [_prepare(v, head.pool) for v in views]
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps,
                                                pct_start=max(0.1, 2 / cfg.steps))
    for step in range(cfg.steps):
        picks = [objects[int(k)] for k in rng.choice(len(objects), size=cfg.batch, p=weights)]
        head.eval()
        clicks = simulate_clicks(head, views, picks, rng)
        head.train()
        emb = torch.stack([views[v].emb for v, _ in picks])
        target = torch.stack([views[v].target[o] for v, o in picks])
        loss = _loss(head_logits(head, emb, clicks), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == cfg.steps - 1:
            log(f"step {step}: loss {loss.item():.4f}")
    head.requires_grad_(False)
    return head.eval()
