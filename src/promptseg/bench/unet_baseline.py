"""External reference: a plain U-Net trained from scratch on image pixels, the standard way.

No text, no pretrained encoder, no cached embeddings: the loop of bench/pixel_train.py (random
crops, flips, quarter turns, colour jitter, Dice + BCE, AdamW one-cycle). Channel widths double
from ``width`` at each of four poolings; ``width`` is the knob for small test or CPU runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .pixel_train import PixelTrainConfig, predict_prob_tiled, predict_tiled, train_pixel_model


def conv_block(cin: int, cout: int) -> nn.Sequential:
    """Two 3x3 convolutions, each with BatchNorm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNet(nn.Module):
    """Four poolings (1/16), transposed-conv upsampling with skips, one output logit map."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = [width * m for m in (1, 2, 4, 8, 16)]
        self.downs = nn.ModuleList([conv_block(3, w[0])] + [conv_block(w[i], w[i + 1]) for i in range(4)])
        self.ups = nn.ModuleList([nn.ConvTranspose2d(w[i + 1], w[i], 2, stride=2) for i in reversed(range(4))])
        self.dec = nn.ModuleList([conv_block(2 * w[i], w[i]) for i in reversed(range(4))])
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
class UNetTrainConfig(PixelTrainConfig):
    width: int = 32             # channels of the first U-Net level (then doubled at each pooling)


def train_unet(images: list[np.ndarray], masks: list[np.ndarray], cfg: UNetTrainConfig, device: str = "cpu",
               on_step: Callable[[dict], None] | None = None, **sampling) -> UNet:
    """Train a fresh U-Net (seeded by ``cfg.seed``) on (image, binary mask) pairs; ``sampling``:
    pixel weights and crop shares (pixel_train.train_pixel_model's ``weights``, ``first``, ``first_share``)."""
    torch.manual_seed(cfg.seed)
    model = UNet(cfg.width)
    groups = [{"params": list(model.parameters()), "lr": cfg.lr}]
    return train_pixel_model(model, groups, images, masks, cfg, device, on_step, **sampling)


def predict_unet(model: UNet, image: np.ndarray, device: str = "cpu", tile: int = 256,
                 threshold: float = 0.5) -> np.ndarray:
    """(H, W) {0, 1} label map of one whole image, in ``tile``² tiles."""
    return predict_tiled(model, image, tile, device, threshold)


def predict_unet_prob(model: UNet, image: np.ndarray, device: str = "cpu", tile: int = 256) -> np.ndarray:
    """(H, W) foreground probability of one whole image, in ``tile``² tiles."""
    return predict_prob_tiled(model, image, tile, device)
