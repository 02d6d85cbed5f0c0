"""External reference: a plain U-Net trained from scratch on image pixels (Dice + BCE).

No text, no pretrained encoder, no cached embeddings: random crops of the labelled images
with flips and 90° rotations, AdamW with warm-up and cosine decay. Inference runs on the
whole image (padded to a multiple of 16).
"""
from __future__ import annotations

import math
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


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallUNet(nn.Module):
    """Four poolings (1/16), transposed-conv upsampling with skips, one output logit map."""

    def __init__(self, width: int = 16):
        super().__init__()
        w = [width * m for m in (1, 2, 4, 8, 16)]
        self.downs = nn.ModuleList([_block(3, w[0])] + [_block(w[i], w[i + 1]) for i in range(4)])
        self.ups = nn.ModuleList([nn.ConvTranspose2d(w[i + 1], w[i], 2, stride=2) for i in reversed(range(4))])
        self.dec = nn.ModuleList([_block(2 * w[i], w[i]) for i in reversed(range(4))])
        self.head = nn.Conv2d(w[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, down in enumerate(self.downs):
            x = down(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for up, dec in zip(self.ups, self.dec):
            x = dec(torch.cat([up(x), skips.pop()], 1))
        return self.head(x)[:, 0]


@dataclass
class UNetTrainConfig(OptimiserRun):
    lr: float = 2e-3
    batch: int = 4              # crops per step
    crop: int = 256             # crop side in pixels
    width: int = 16             # channels of the first U-Net level

    def to_dict(self) -> dict:
        return asdict(self)


def _to_chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(prepare_image(image)).permute(2, 0, 1).contiguous()


def _sample(imgs: list[torch.Tensor], masks: list[torch.Tensor], crop: int, rng: random.Random):
    i = rng.randrange(len(imgs))
    x, m = imgs[i], masks[i]
    h, w = m.shape
    c = min(crop, h, w)
    y0, x0 = rng.randint(0, h - c), rng.randint(0, w - c)
    x, m = x[:, y0:y0 + c, x0:x0 + c], m[y0:y0 + c, x0:x0 + c]
    k = rng.randrange(4)
    x, m = torch.rot90(x, k, (1, 2)), torch.rot90(m, k, (0, 1))
    if rng.random() < 0.5:
        x, m = x.flip(2), m.flip(1)
    return x, m


def train_unet(images: list[np.ndarray], masks: list[np.ndarray], cfg: UNetTrainConfig, device: str = "cpu",
               on_step: Callable[[dict], None] | None = None) -> SmallUNet:
    """Train a fresh SmallUNet (seeded by ``cfg.seed``) on (image, binary mask) pairs."""
    if not images:
        raise ValueError("the U-Net baseline needs at least one labelled image")
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    model = SmallUNet(cfg.width).to(device).train()
    imgs = [_to_chw(im) for im in images]
    ms = [torch.from_numpy((np.asarray(m) > 0).astype(np.float32)) for m in masks]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps)))
    t0 = time.time()
    for step in range(cfg.steps):
        batch = [_sample(imgs, ms, cfg.crop, rng) for _ in range(cfg.batch)]
        x = torch.stack([b[0] for b in batch]).to(device)
        y = torch.stack([b[1] for b in batch]).to(device)
        loss = dice_bce_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if on_step:
            on_step({"step": step + 1, "total": float(loss.detach()), "it_s": (step + 1) / (time.time() - t0)})
    return model.eval()


@torch.no_grad()
def predict_unet(model: SmallUNet, image: np.ndarray, device: str = "cpu", threshold: float = 0.5) -> np.ndarray:
    """(H, W) {0, 1} label map of one whole image."""
    model.eval()
    x = _to_chw(image)[None].to(device)
    h, w = x.shape[-2:]
    ph, pw = (-h) % 16, (-w) % 16
    x = F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "constant")
    prob = torch.sigmoid(model(x))[0, :h, :w]
    return (prob >= threshold).cpu().numpy().astype(np.int32)
