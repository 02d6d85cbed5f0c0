"""Grounding map (text-image cosine similarity) and the multi-class merge.

The grounding map is DuSSS/AMVLM's "text-guided mask": dense pixel features compared with
the prompt embedding. It is cheap and independent of the decoder, which makes it a useful
second expert for pseudo labels.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class GroundingHead(nn.Module):
    def __init__(self, image_channels: int = 256, text_dim: int = 384, dim: int = 128):
        super().__init__()
        self.pixel = nn.Sequential(nn.Conv2d(image_channels, dim, 1), nn.GELU(), nn.Conv2d(dim, dim, 3, padding=1))
        self.text = nn.Sequential(nn.Linear(text_dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.scale = nn.Parameter(torch.tensor(10.0))   # TCL's Sim2Mask: w·S + β
        self.bias = nn.Parameter(torch.tensor(-2.5))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # for L_tg
        self.background = nn.Parameter(torch.tensor(0.0))  # logit of the background channel

    def pixel_features(self, image_emb: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.pixel(image_emb), dim=1)

    def text_features(self, text_pooled: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text(text_pooled), dim=-1)

    def forward(self, image_emb: torch.Tensor, text_pooled: torch.Tensor, pix: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B,C,h,w), (K,T) -> logits (B,K,h,w), pixel features (B,D,h,w), text features (K,D).
        ``pix``: the pixel features if already computed (they do not depend on the text)."""
        pix = self.pixel_features(image_emb) if pix is None else pix
        txt = self.text_features(text_pooled)
        sim = torch.einsum("bdhw,kd->bkhw", pix, txt)
        return self.scale * sim + self.bias, pix, txt

    def class_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """(B,K,h,w) per-class logits -> (B,1+K,h,w) with a learned background channel 0."""
        bg = self.background.expand(logits.shape[0], 1, *logits.shape[2:])
        return torch.cat([bg, logits], dim=1)

    def clamped_logit_scale(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=math.log(100.0)).exp()


def merge_classes(probs: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    """CPS4 merge: (K,H,W) or (B,K,H,W) class probabilities -> label map, 0 = background
    where every class is below ``tau``, else 1 + argmax."""
    best, idx = probs.max(dim=-3)
    return torch.where(best >= tau, idx + 1, torch.zeros_like(idx))
