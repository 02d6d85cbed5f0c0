"""Stage 1: supervised VLM training of the prompt decoder on labelled (image, class, mask).

Loss = Dice + BCE per prompt (+ presence BCE), DuSSS dual contrastive learning with
semantic-similarity supervision, the CPS4 token- and pixel-level attention losses, and
the text-guided InfoNCE on masked pooling (L_tg). Every term has a weight; weight 0 turns
it off. Works on cached tile embeddings, so a frozen backbone is never re-run.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..model.decoder import PromptBatch
from ..model.losses import (dice_bce_loss, dual_contrastive_loss, masked_pool, pixel_class_loss,
                            text_guided_loss, token_attention_loss)
from ..model.segmenter import PromptSegModel
from ..model.text import MAX_TOKENS, TextEmbedding


@dataclass
class LossWeights:
    seg: float = 1.0
    presence: float = 0.5
    contrastive: float = 0.1
    sss: bool = True            # semantic-similarity supervision inside the contrastive term
    token_attention: float = 0.2
    pixel_class: float = 0.5
    text_guided: float = 0.1


@dataclass
class TrainConfig:
    steps: int = 300
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_tiles: int = 2
    max_classes: int = 4        # prompts decoded per tile per step (present + absent ones)
    crop: int = 32              # crop of the token grid per tile (0 = whole tile)
    seed: int = 0
    temperature: float = 0.07
    weights: LossWeights = field(default_factory=LossWeights)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainItem:
    name: str
    emb: torch.Tensor          # (T, C, g, g) tile embeddings
    labels: torch.Tensor       # (T, tile, tile) long; 0 background, i+1 -> classes[i], -1 ignore
    classes: list[int]         # global class index of each label value
    pixels: torch.Tensor | None = None   # (T, 3, tile, tile) uint8, for a model's pixel branch


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


def pixel_crop(pixels: torch.Tensor | None, t: int, y: int, x: int, c: int, stride: int) -> torch.Tensor | None:
    """Tile ``t``'s pixels under the token crop (y, x, c) as float in [0, 1] (None stays None)."""
    if pixels is None:
        return None
    return pixels[t, :, y * stride:(y + c) * stride, x * stride:(x + c) * stride].float() / 255.0


def stack_pixels(px: list[torch.Tensor | None], device) -> torch.Tensor | None:
    """Pixel crops as one batch, or None if any is missing (a model without a pixel branch
    needs none; one with it then says clearly that they are missing)."""
    return None if any(p is None for p in px) else torch.stack(px).to(device)


def _sample_crop(item: TrainItem, crop: int, stride: int, rng: random.Random):
    """(embedding crop (C,c,c), global labels (c·s,c·s), (y, x, c), pixel crop (3,c·s,c·s) or None)."""
    t = rng.randrange(item.emb.shape[0])
    g = item.emb.shape[-1]
    c = g if crop <= 0 or crop >= g else crop
    lab = item.labels[t]
    # Prefer crops that contain foreground, so small structures are seen often.
    for _ in range(4):
        y, x = rng.randint(0, g - c), rng.randint(0, g - c)
        sub = lab[y * stride:(y + c) * stride, x * stride:(x + c) * stride]
        if (sub > 0).any():
            break
    emb = item.emb[t, :, y:y + c, x:x + c]
    # Global class index map for the crop: -1 ignore, 0 background, k+1 global class k.
    lut = torch.tensor([0] + [k + 1 for k in item.classes], dtype=torch.long)
    glob = torch.where(sub >= 0, lut[sub.clamp_min(0)], torch.full_like(sub, -1))
    return emb, glob, (y, x, c), pixel_crop(item.pixels, t, y, x, c, stride)


def train_stage1(model: PromptSegModel, items: list[TrainItem], prompts: ClassPrompts, cfg: TrainConfig,
                 device: str = "cpu", on_step: Callable[[dict], None] | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Train in place; returns the last step's losses. ``on_step`` gets a dict per step."""
    if not items:
        raise ValueError("stage-1 training needs at least one labelled image")
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = optimizer or torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = warmup_cosine(opt, cfg.steps)
    pooled, tokens, tmask, lat = prompts.tensors(device)
    stride = int(model.backbone.stride)
    full_pe = model.decoder.dense_pe(model.grid_size, model.grid_size).to(device)
    last: dict = {}
    t0 = time.time()
    for step in range(cfg.steps):
        if should_stop and should_stop():
            break
        losses = stage1_losses(model, [_sample_crop(rng.choice(items), cfg.crop, stride, rng)
                                       for _ in range(cfg.batch_tiles)],
                               (pooled, tokens, tmask, lat), full_pe, cfg, rng, device)
        last = optimiser_step(opt, sched, params, losses, step, t0)
        if on_step:
            on_step(last)
    model.eval()
    return last


def warmup_cosine(opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """20 steps of linear warm-up, then cosine decay to 0 at ``steps``."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))


def optimiser_step(opt: torch.optim.Optimizer, sched, params: list[torch.Tensor], losses: dict, step: int,
                   t0: float) -> dict:
    """Backward of ``losses['total']``, clip to norm 1, step; the step's record: losses as
    floats, the last parameter group's learning rate, steps per second since ``t0``."""
    opt.zero_grad(set_to_none=True)
    losses["total"].backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    sched.step()
    return {**{k: float(v.detach()) for k, v in losses.items()}, "step": step + 1, "lr": sched.get_last_lr()[-1],
            "it_s": (step + 1) / (time.time() - t0)}


def stage1_losses(model, crops, prompt_tensors, full_pe, cfg: TrainConfig, rng: random.Random, device,
                  fine: torch.Tensor | None = None) -> dict:
    """All stage-1 terms for a batch of crops (see :func:`_sample_crop`). ``fine``: the pixel
    branch's features of the crops, if the caller already computed them."""
    pooled, tokens, tmask, lat = prompt_tensors
    w = cfg.weights
    n_cls = pooled.shape[0]
    embs = torch.stack([c[0] for c in crops]).to(device)
    glob = torch.stack([c[1] for c in crops]).to(device)
    y, x, c = crops[0][2]
    pe = full_pe[:, y:y + c, x:x + c] if all(cr[2] == crops[0][2] for cr in crops) else full_pe[:, :c, :c]
    # Queries: present classes first, then absent ones as negatives.
    q_img, q_cls = [], []
    for b in range(len(crops)):
        present = [k for k in range(n_cls) if (glob[b] == k + 1).any()]
        absent = [k for k in range(n_cls) if k not in present]
        rng.shuffle(present)
        rng.shuffle(absent)
        chosen = (present + absent)[:max(1, cfg.max_classes)]
        q_img += [b] * len(chosen)
        q_cls += chosen
    qi = torch.tensor(q_img, device=device)
    qc = torch.tensor(q_cls, device=device)
    pb = PromptBatch(qi, pooled[qc], tokens[qc], tmask[qc], lat[qc])
    # Grounding: class similarity maps on the token grid; its pixel features also feed the
    # decoder's dense prompt, so they are computed once.
    g_logits, pix, txt = model.grounding(embs, pooled)
    if fine is None:
        fine = model.fine_features(stack_pixels([c[3] for c in crops], device))
    out = model.decode(embs, pb, pe, pix=pix, fine=fine)
    target = (glob[qi] == (qc + 1)[:, None, None]).float()
    valid = (glob[qi] >= 0).float()
    logits = out.mask_logits
    if logits.shape[-1] != target.shape[-1]:
        logits = F.interpolate(logits[:, None], size=target.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    present_q = (target * valid).flatten(1).amax(1)
    losses = {"seg": dice_bce_loss(logits, target, valid)}
    losses["presence"] = F.binary_cross_entropy_with_logits(out.presence_logit.float(), present_q)
    zero = logits.sum() * 0.0
    onehot = torch.stack([(glob == k + 1).float() for k in range(n_cls)], 1)       # (B,K,H,W)
    on_grid = F.adaptive_avg_pool2d(onehot, g_logits.shape[-2:])                      # area fractions
    present = on_grid.flatten(2).amax(2) > 0
    if w.token_attention > 0:
        tgt = on_grid[qi, qc].flatten(1)
        losses["token_attention"] = token_attention_loss(out.attention.float(), tgt)
    if w.pixel_class > 0:
        grid_t = glob[:, 2::4, 2::4] if glob.shape[-1] // 4 == g_logits.shape[-1] else \
            F.interpolate(glob[:, None].float(), size=g_logits.shape[-2:], mode="nearest")[:, 0].long()
        losses["pixel_class"] = pixel_class_loss(model.grounding.class_logits(g_logits), grid_t)
    if w.text_guided > 0:
        losses["text_guided"] = text_guided_loss(pix, txt, torch.sigmoid(g_logits), present,
                                                 model.grounding.clamped_logit_scale())
    if w.contrastive > 0 and present.any():
        pix_b = model.grounding.pixel_features(F.dropout(embs, 0.1, training=True))
        ra = masked_pool(pix, on_grid)[present]
        rb = masked_pool(pix_b, on_grid)[present]
        rc = present.nonzero()[:, 1]
        dist = None
        if w.sss:
            mu_r, sg_r = model.distribution(ra[None])
            mu_t, sg_t = model.distribution(txt[None])
            dist = (mu_r[0], sg_r[0], mu_t[0], sg_t[0])
        losses["contrastive"] = dual_contrastive_loss(ra, rb, txt, rc, cfg.temperature, dist)["total"]
    total = zero
    for name, value in list(losses.items()):
        total = total + getattr(w, name) * value
    losses["total"] = total
    return losses
