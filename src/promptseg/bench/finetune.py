"""Diagnostic methods that train the image encoder too: ``supervised_ft`` (the labelled
subset) and ``supervised_ft_100`` (every training image).

Every other method trains a decoder on cached embeddings of the frozen LiteMedSAM encoder.
These run the encoder on every step, on random whole-tile crops (256² for LiteMedSAM) in a
random dihedral view, with the encoder at a tenth of the decoder's learning rate and the same
stage-1 losses as ``supervised``. They answer one question: how much of the gap to the
issue's orientation numbers (a trained TinyViT) the frozen encoder costs. A GPU job, since
the encoder runs forward and backward on every step. ``from_stage`` k > 0 makes it a CPU
job: TinyViT's stages before k are frozen and run once per tile of the images' dihedral
views (cached), and only the later stages, the neck and the decoder train, on whole tiles.
"""
from __future__ import annotations

import contextlib
import itertools
import random
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable

import numpy as np
import torch

from ..io.normalise import prepare_image
from ..io.tiling import extract_tiles, tile_masks
from ..model.segmenter import PromptSegModel
from ..training.augment import D4_VIEWS, image_view
from ..training.loop import optimiser_step, run_steps, warmup_cosine
from ..training.ssl_config import TrainConfig
from ..training.stage1 import stage1_losses
from ..training.types import ClassPrompts, LabelledCrop
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
    from_stage: int = 0         # >0: TinyViT stages before this one stay frozen and are run once
    views: int = 8              # (from_stage > 0) dihedral views of each image whose tiles are cached

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


class _StageSplit:
    """TinyViT (LiteMedSAM) cut before stage k: ``head`` runs the frozen stages, ``tail`` the
    trained ones and the neck (TinyViT.forward_features, in two parts)."""

    def __init__(self, model: PromptSegModel, k: int):
        vit = getattr(model.backbone, "encoder", None)
        if vit is None or not hasattr(vit, "layers") or not 0 < k < len(vit.layers):
            raise ValueError(f"--ft-from-stage needs the litemedsam backbone and 1..3, got {k}")
        self.vit, self.k = vit, k
        for m in [vit.patch_embed] + list(vit.layers)[:k]:
            m.requires_grad_(False).eval()   # eval: their batch norms keep the pretrained statistics

    @torch.no_grad()
    def head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.vit.patch_embed(x)
        for layer in list(self.vit.layers)[:self.k]:
            x = layer(x)
        return x

    def tail(self, h: torch.Tensor) -> torch.Tensor:
        for layer in list(self.vit.layers)[self.k:]:
            h = layer(h)
        b, n, c = h.shape
        side = int(round(n ** 0.5))
        return self.vit.neck(h.view(b, side, side, c).permute(0, 3, 1, 2))


def _cached_tiles(split: _StageSplit, rows: list[SegImage], tile: int, views: int, device: str):
    """(frozen-stage features (n, L, C) float16 on the CPU, labels (n, tile, tile); -1 marks
    padding, pixels (n, 3, tile, tile) in [0, 1]) of every tile of every view of ``rows``."""
    feats, labels, pixels = [], [], []
    for r in rows:
        for geo in D4_VIEWS[:views]:
            tiles, grid = extract_tiles(prepare_image(image_view(r.image, geo)), tile)
            lab = tile_masks((image_view(np.asarray(r.mask), geo) > 0).astype(np.int64), grid)
            x = torch.from_numpy(tiles).permute(0, 3, 1, 2).contiguous()
            for i in range(len(x)):
                feats.append(split.head(x[i:i + 1].to(device)).half().cpu())
                labels.append(torch.from_numpy(lab[i]))
            pixels.append(x)
    return torch.cat(feats), torch.stack(labels), torch.cat(pixels)


def train_finetune(model: PromptSegModel, rows: list[SegImage], prompts: ClassPrompts, cfg: FinetuneConfig,
                   device: str = "cpu", on_step: Callable[[dict], None] | None = None,
                   log: Callable[[str], None] | None = None) -> dict:
    """Train encoder (or its stages from ``cfg.from_stage`` on) + decoder in place on ``rows``
    (one foreground class, prompt ``prompts.names[0]``); returns the last step's losses."""
    if not rows:
        raise ValueError("fine-tuning needs at least one labelled image")
    if len(prompts.names) != 1:
        raise ValueError("the fine-tuning diagnostic trains one foreground class")
    rng = random.Random(cfg.seed * 7919)
    torch.manual_seed(cfg.seed)
    model.cfg = replace(model.cfg, train_backbone=True)   # so embed() keeps the graph
    model.backbone.requires_grad_(True)
    model.to(device).train()
    split = _StageSplit(model, cfg.from_stage) if cfg.from_stage else None
    if split:
        t = time.time()
        feats, tile_labels, tile_px = _cached_tiles(split, rows, model.tile, cfg.views, device)
        if log:
            log(f"    frozen stages 0-{cfg.from_stage - 1} run on {len(feats)} tiles in {time.time() - t:.0f} s")
    else:
        images = [(prepare_image(r.image), np.asarray(r.mask)) for r in rows]
    enc = [p for p in model.backbone.parameters() if p.requires_grad]
    enc_ids = {id(p) for p in enc}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in enc_ids]
    opt = torch.optim.AdamW([{"params": enc, "lr": cfg.encoder_lr}, {"params": rest, "lr": cfg.lr}],
                            weight_decay=cfg.weight_decay, foreach=True)
    sched = warmup_cosine(opt, cfg.steps)
    loss_cfg = TrainConfig(steps=cfg.steps, seed=cfg.seed)     # the supervised method's loss weights
    prompt_tensors = prompts.tensors(device)
    g = model.grid_size
    full_pe = model.decoder.dense_pe(g, g).to(device)
    cuda = str(device).startswith("cuda")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda and cfg.bf16 else contextlib.nullcontext()
    params = enc + rest
    numbers = itertools.count(1)

    def step() -> dict:
        if split:
            idx = [rng.randrange(len(feats)) for _ in range(cfg.batch_tiles)]
            labels, x = tile_labels[idx], tile_px[idx]
        else:
            batch = [_crop(*images[rng.randrange(len(images))], model.tile, rng) for _ in range(cfg.batch_tiles)]
            x = torch.from_numpy(np.stack([b[0] for b in batch])).permute(0, 3, 1, 2).to(device)
            labels = torch.from_numpy(np.stack([b[1] for b in batch]))
        with autocast:
            emb = (split.tail(feats[idx].to(device).float()) if split else model.embed(x)).float()
            crops = [LabelledCrop(emb[i], labels[i], (0, 0, g), x[i]) for i in range(len(labels))]
            losses = stage1_losses(model, crops, prompt_tensors, full_pe, loss_cfg, rng, device)
        return optimiser_step(opt, sched, params, losses, next(numbers))

    last = run_steps(step, cfg.steps, on_step=on_step)
    model.eval()
    return last
