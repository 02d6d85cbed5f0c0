"""The standard supervised loop of the bench's pixel baselines (``unet``, ``litemedsam_ft``).

What a user with ordinary PyTorch would write: batches of random square crops of the labelled
images, flips, quarter turns and a mild per-channel colour jitter; Dice + BCE; AdamW with a
one-cycle schedule (each parameter group its own peak rate). Inference scores a whole image
in tiles of the training crop, the image padded by reflection to a multiple of it.
"""
from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..io.normalise import prepare_image
from ..model.losses import dice_bce_loss
from ..training.ssl_config import OptimiserRun


@dataclass
class PixelTrainConfig(OptimiserRun):
    steps: int = 1500
    lr: float = 1e-3            # one-cycle peak rate (of the decoder, for an encoder-decoder model)
    batch: int = 8              # crops per step
    crop: int = 256             # crop side in pixels, also the inference tile
    jitter: float = 0.1         # per-channel colour jitter: gain in 1 ± jitter, offset in ± jitter / 2

    def to_dict(self) -> dict:
        return asdict(self)


def to_chw(image: np.ndarray) -> torch.Tensor:
    """(3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(prepare_image(image)).permute(2, 0, 1).contiguous()


def sample_crop(imgs: list[torch.Tensor], masks: list[torch.Tensor], crop: int, jitter: float,
                rng: random.Random, index: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A random crop of image ``index`` (default: a random one; padded with zeros, mask too, if
    the image is smaller), a random dihedral view of it, and a per-channel gain and offset on its
    colours. A mask may carry leading channels (a target and its pixel weights), cut alike."""
    i = rng.randrange(len(imgs)) if index is None else index
    x, m = imgs[i], masks[i]
    h, w = m.shape[-2:]
    y0, x0 = rng.randint(0, max(0, h - crop)), rng.randint(0, max(0, w - crop))
    x, m = x[:, y0:y0 + crop, x0:x0 + crop], m[..., y0:y0 + crop, x0:x0 + crop]
    if x.shape[-2:] != (crop, crop):
        ph, pw = crop - x.shape[1], crop - x.shape[2]
        x, m = F.pad(x, (0, pw, 0, ph)), F.pad(m, (0, pw, 0, ph))
    k = rng.randrange(4)
    x, m = torch.rot90(x, k, (1, 2)), torch.rot90(m, k, (-2, -1))
    if rng.random() < 0.5:
        x, m = x.flip(2), m.flip(-1)
    if jitter > 0:
        gain = torch.tensor([1 + rng.uniform(-jitter, jitter) for _ in range(3)]).view(3, 1, 1)
        offset = torch.tensor([rng.uniform(-jitter, jitter) / 2 for _ in range(3)]).view(3, 1, 1)
        x = (x * gain + offset).clamp(0, 1)
    return x, m


def _pick(rng: random.Random, n: int, first: int, first_share: float | None) -> int:
    """A random image index; with ``first_share``, one of the ``first`` images that often."""
    if first_share is None or first in (0, n):
        return rng.randrange(n)
    return rng.randrange(first) if rng.random() < first_share else rng.randrange(first, n)


def train_pixel_model(model: nn.Module, groups: list[dict], images: list[np.ndarray], masks: list[np.ndarray],
                      cfg: PixelTrainConfig, device: str = "cpu",
                      on_step: Callable[[dict], None] | None = None, weights: list[np.ndarray] | None = None,
                      first: int = 0, first_share: float | None = None) -> nn.Module:
    """Train ``model`` (image batch -> (N, H, W) logits) in place; ``groups`` are AdamW parameter
    groups, each with its own peak ``lr``. ``weights``: per-pixel loss weights in [0, 1], one map
    per image (a weight-0 pixel is ignored). ``first_share``: the share of crops drawn from the
    ``first`` images (the rest from the others). Seeded by ``cfg.seed``; returns the model in eval mode."""
    if not images:
        raise ValueError("a pixel baseline needs at least one labelled image")
    if len(images) != len(masks) or weights is not None and len(weights) != len(images):
        raise ValueError(f"{len(images)} images but {len(masks)} masks"
                         + ("" if weights is None else f" and {len(weights)} weight maps"))
    rng = random.Random(cfg.seed)
    imgs = [to_chw(im) for im in images]
    ms = [torch.from_numpy((np.asarray(m) > 0).astype(np.float32)) for m in masks]
    for x, m in zip(imgs, ms):
        if x.shape[1:] != m.shape:
            raise ValueError(f"mask shape {tuple(m.shape)} != image shape {tuple(x.shape[1:])}")
    if weights is not None:
        ws = [torch.from_numpy(np.asarray(w, np.float32)) for w in weights]
        if any(w.shape != m.shape for w, m in zip(ws, ms)):
            raise ValueError("each weight map must have its image's shape")
        ms = [torch.stack([m, w]) for m, w in zip(ms, ws)]
    model.to(device).train()
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in groups], total_steps=max(2, cfg.steps))
    t0 = time.time()
    for step in range(cfg.steps):
        batch = [sample_crop(imgs, ms, cfg.crop, cfg.jitter, rng,
                             None if first_share is None else _pick(rng, len(imgs), first, first_share))
                 for _ in range(cfg.batch)]
        x = torch.stack([b[0] for b in batch]).to(device)
        y = torch.stack([b[1] for b in batch]).to(device)
        logits = model(x)
        loss = dice_bce_loss(logits, y) if weights is None else dice_bce_loss(logits, y[:, 0], y[:, 1])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if on_step:
            on_step({"step": step + 1, "total": float(loss.detach()), "it_s": (step + 1) / (time.time() - t0)})
    return model.eval()


@torch.no_grad()
def predict_prob_tiled(model: nn.Module, image: np.ndarray, tile: int, device: str = "cpu",
                       batch: int = 4) -> np.ndarray:
    """(H, W) float32 foreground probability of one whole image, scored in ``tile``² tiles."""
    model.eval()
    x = to_chw(image)
    h, w = x.shape[1:]
    ph, pw = (-h) % tile, (-w) % tile
    if ph or pw:
        x = F.pad(x[None], (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "constant")[0]
    H, W = x.shape[1:]
    corners = [(y, x0) for y in range(0, H, tile) for x0 in range(0, W, tile)]
    prob = torch.zeros(H, W)
    for i in range(0, len(corners), batch):
        part = corners[i:i + batch]
        tiles = torch.stack([x[:, y:y + tile, x0:x0 + tile] for y, x0 in part]).to(device)
        p = torch.sigmoid(model(tiles).float()).cpu()
        for (y, x0), t in zip(part, p):
            prob[y:y + tile, x0:x0 + tile] = t
    return prob[:h, :w].numpy()


def predict_tiled(model: nn.Module, image: np.ndarray, tile: int, device: str = "cpu",
                  threshold: float = 0.5, batch: int = 4) -> np.ndarray:
    """(H, W) {0, 1} label map of one whole image, scored in ``tile``² tiles."""
    return (predict_prob_tiled(model, image, tile, device, batch) >= threshold).astype(np.int32)
