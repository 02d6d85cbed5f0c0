"""Diagnostic methods that train the image encoder too: ``supervised_ft`` (the labelled
subset) and ``supervised_ft_100`` (every training image).

Every other method trains a decoder on cached embeddings of the frozen LiteMedSAM encoder.
These run the encoder on every step, on random whole-tile crops (256² for LiteMedSAM) in a
random dihedral view, with the encoder at a tenth of the decoder's learning rate and the same
stage-1 losses as ``supervised``. They answer one question: how much of the gap to the
issue's orientation numbers (≈ 82 Dice, a trained TinyViT) the frozen encoder costs. A GPU
job: on the 2-core CPU one 256² tile takes ~2.7 s forward.
"""
from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable

import numpy as np
import torch

from ..engine.augment import D4_VIEWS, image_view
from ..engine.stage1 import ClassPrompts, TrainConfig, stage1_losses
from ..io.normalise import prepare_image
from ..model.segmenter import PromptSegModel
from .data import SegImage


@dataclass
class FinetuneConfig:
    steps: int = 1500
    lr: float = 1e-3            # decoder and heads (the supervised method's rate)
    encoder_lr: float = 1e-4
    weight_decay: float = 1e-4
    batch_tiles: int = 8
    seed: int = 0
    bf16: bool = True           # autocast on CUDA (the decoder-only trainer does the same)

    def to_dict(self) -> dict:
        return asdict(self)


def _crop(image01: np.ndarray, mask: np.ndarray, side: int, rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    """A random side² crop (padded with ignore labels where the image is smaller), in a
    random dihedral view; labels: 0 background, 1 foreground, -1 ignore."""
    h, w = mask.shape
    img = np.zeros((side, side, 3), np.float32)
    lab = np.full((side, side), -1, np.int64)
    y, x = rng.randint(0, max(0, h - side)), rng.randint(0, max(0, w - side))
    ph, pw = min(side, h - y), min(side, w - x)
    img[:ph, :pw] = image01[y:y + ph, x:x + pw]
    lab[:ph, :pw] = mask[y:y + ph, x:x + pw] > 0
    geo = D4_VIEWS[rng.randrange(len(D4_VIEWS))]
    return image_view(img, geo), image_view(lab, geo)


def freeze_encoder(model: PromptSegModel) -> PromptSegModel:
    """Back to a frozen encoder (as the cached-embedding trainers expect), in eval mode."""
    model.cfg = replace(model.cfg, train_backbone=False)
    model.backbone.requires_grad_(False)
    return model.eval()


def train_finetune(model: PromptSegModel, rows: list[SegImage], prompts: ClassPrompts, cfg: FinetuneConfig,
                   device: str = "cpu", on_step: Callable[[dict], None] | None = None) -> dict:
    """Train encoder + decoder in place on ``rows`` (one foreground class, prompt
    ``prompts.names[0]``); returns the last step's losses."""
    if not rows:
        raise ValueError("fine-tuning needs at least one labelled image")
    if len(prompts.names) != 1:
        raise ValueError("the fine-tuning diagnostic trains one foreground class")
    rng = random.Random(cfg.seed * 7919)
    torch.manual_seed(cfg.seed)
    model.cfg = replace(model.cfg, train_backbone=True)   # so embed() keeps the graph
    model.backbone.requires_grad_(True)
    model.to(device).train()
    images = [(prepare_image(r.image), np.asarray(r.mask)) for r in rows]
    enc = list(model.backbone.parameters())
    enc_ids = {id(p) for p in enc}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in enc_ids]
    opt = torch.optim.AdamW([{"params": enc, "lr": cfg.encoder_lr}, {"params": rest, "lr": cfg.lr}],
                            weight_decay=cfg.weight_decay, foreach=True)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps)))
    loss_cfg = TrainConfig(steps=cfg.steps, seed=cfg.seed)     # the supervised method's loss weights
    prompt_tensors = prompts.tensors(device)
    g = model.grid_size
    full_pe = model.decoder.dense_pe(g, g).to(device)
    cuda = str(device).startswith("cuda")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda and cfg.bf16 else contextlib.nullcontext()
    params = enc + rest
    last: dict = {}
    t0 = time.time()
    for step in range(cfg.steps):
        batch = [_crop(*images[rng.randrange(len(images))], model.tile, rng) for _ in range(cfg.batch_tiles)]
        x = torch.from_numpy(np.stack([b[0] for b in batch])).permute(0, 3, 1, 2).to(device)
        labels = torch.from_numpy(np.stack([b[1] for b in batch]))
        with autocast:
            emb = model.embed(x).float()
            crops = [(emb[i], labels[i], (0, 0, g)) for i in range(len(batch))]
            losses = stage1_losses(model, crops, prompt_tensors, full_pe, loss_cfg, rng, device)
        opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        last = {k: float(v.detach()) for k, v in losses.items()}
        last.update(step=step + 1, lr=sched.get_last_lr()[1], it_s=(step + 1) / (time.time() - t0))
        if on_step:
            on_step(last)
    model.eval()
    return last
