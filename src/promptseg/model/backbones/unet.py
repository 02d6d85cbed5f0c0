"""A small U-Net encoder trained from scratch; also the supervised baseline's backbone."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F



def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.GroupNorm(min(8, cout), cout), nn.GELU(),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.GroupNorm(min(8, cout), cout), nn.GELU())


class UNetBackbone(nn.Module):
    """Down to 1/16, back up to 1/4 with skips; output (B, out_channels, T/4, T/4)."""

    stride = 4

    def __init__(self, width: int = 32, out_channels: int = 256, tile: int = 256):
        super().__init__()
        w = width
        self.tile = tile
        self.out_channels = out_channels
        self.pretrained = False
        self.weights_sha256 = None
        self.inc = _block(3, w)
        self.d1, self.d2, self.d3, self.d4 = _block(w, 2 * w), _block(2 * w, 4 * w), _block(4 * w, 8 * w), _block(8 * w, 8 * w)
        self.u3 = _block(16 * w, 4 * w)
        self.u2 = _block(8 * w, 4 * w)
        self.out = nn.Conv2d(4 * w, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self.inc(x)                       # 1
        x1 = self.d1(F.max_pool2d(x0, 2))      # 1/2
        x2 = self.d2(F.max_pool2d(x1, 2))      # 1/4
        x3 = self.d3(F.max_pool2d(x2, 2))      # 1/8
        x4 = self.d4(F.max_pool2d(x3, 2))      # 1/16
        y = self.u3(torch.cat([F.interpolate(x4, scale_factor=2.0), x3], 1))
        y = self.u2(torch.cat([F.interpolate(y, scale_factor=2.0), x2], 1))
        return self.out(y)


def build(width: int = 32, out_channels: int = 256, tile: int = 256, **_: object) -> nn.Module:
    return UNetBackbone(width=width, out_channels=out_channels, tile=tile)
