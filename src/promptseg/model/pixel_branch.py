"""Full-resolution image features for the decoder's mask head (a U-Net-style skip path).

The frozen encoder sees a tile through 4×4-pixel tokens; the decoder upsamples those tokens
back to pixels with two transposed convolutions that never look at the image again, so
boundaries are only as sharp as the token grid allows. This branch reads the tile's pixels
(two small convolution levels, full and half resolution) and its output is added to the
decoder's upscaled mask features before the per-prompt hypernetwork product: every prompt
gets its own linear read-out of local colour and edge features. The last convolution starts
at zero, so a new branch leaves the pretrained decoder's masks unchanged until it is trained.
It depends on the image only, so a Predictor computes it once per image, like the embedding.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def _conv_block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    # GroupNorm, not BatchNorm: training batches are 2-8 crops.
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.GroupNorm(4, cout), nn.GELU(),
        nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(4, cout), nn.GELU())


class PixelBranch(nn.Module):
    """(B, 3, H, W) tiles in [0, 1] -> (B, out_channels, H, W) features (H, W even)."""

    def __init__(self, out_channels: int = 32, width: int = 16):
        super().__init__()
        self.full = _conv_block(3, width)
        self.down = _conv_block(width, 2 * width, stride=2)
        self.up = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.out = nn.Conv2d(2 * width, out_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        if tiles.dtype == torch.uint8:
            tiles = tiles.float() / 255.0
        f = self.full((tiles - 0.5) / 0.25)
        return self.out(torch.cat([f, self.up(self.down(f))], 1))
