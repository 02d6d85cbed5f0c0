"""Stage 1: supervised VLM training of the prompt decoder on labelled (image, class, mask).

Loss = Dice + BCE per prompt (+ presence BCE), DuSSS dual contrastive learning with
semantic-similarity supervision, the CPS4 token- and pixel-level attention losses, and
the text-guided InfoNCE on masked pooling (L_tg). Every term has a weight; weight 0 turns
it off. Works on cached tile embeddings, so a frozen backbone is never re-run.
"""
from __future__ import annotations

import itertools
import random
from typing import Callable

import torch
import torch.nn.functional as F

from ..model.decoder import PromptBatch
from ..model.losses import (dice_bce_loss, dual_contrastive_loss, masked_pool, pixel_class_loss,
                            text_guided_loss, token_attention_loss)
from ..model.segmenter import PromptSegModel
from .crops import sample_crop, stack_pixels
from .loop import optimiser_step, run_steps, warmup_cosine
from .ssl_config import TrainConfig
from .types import ClassPrompts, LabelledCrop, TrainItem


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
    numbers = itertools.count(1)

    def step() -> dict:
        losses = stage1_losses(model, [sample_crop(rng.choice(items), cfg.crop, stride, rng)
                                       for _ in range(cfg.batch_tiles)],
                               (pooled, tokens, tmask, lat), full_pe, cfg, rng, device)
        return optimiser_step(opt, sched, params, losses, next(numbers))

    last = run_steps(step, cfg.steps, on_step=on_step, should_stop=should_stop)
    model.eval()
    return last


def stage1_losses(model: PromptSegModel, crops: list[LabelledCrop], prompt_tensors, full_pe: torch.Tensor,
                  cfg: TrainConfig, rng: random.Random, device, fine: torch.Tensor | None = None) -> dict:
    """All stage-1 terms for a batch of crops (all of one size). ``fine``: the pixel branch's
    features of the crops, if the caller already computed them."""
    pooled, tokens, tmask, lat = prompt_tensors
    w = cfg.weights
    n_cls = pooled.shape[0]
    embs = torch.stack([c.emb for c in crops]).to(device)
    glob = torch.stack([c.labels for c in crops]).to(device)
    y, x, c = crops[0].window
    pe = full_pe[:, y:y + c, x:x + c] if all(cr.window == crops[0].window for cr in crops) else full_pe[:, :c, :c]
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
        fine = model.fine_features(stack_pixels([c.pixels for c in crops], device))
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
