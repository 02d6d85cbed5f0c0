"""The text-promptable segmenter: backbone + prompt decoder + grounding head."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .backbones import build_backbone
from .decoder import DecoderConfig, DecoderOutput, PromptBatch, PromptDecoder, gather_rows
from .distribution import DistributionHead
from .heads import GroundingHead
from .pixel_branch import PixelBranch
from .text import DEFAULT_TEXT_MODEL, MAX_TOKENS, TextEmbedding


@dataclass
class ModelConfig:
    backbone: str = "litemedsam"
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    pretrained_backbone: bool = True
    train_backbone: bool = False
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    grounding_dim: int = 128
    text_model: str = DEFAULT_TEXT_MODEL
    threshold: float = 0.5
    grounding_prompt: bool = True   # feed the text-similarity map to the decoder as a dense prompt
    pixel_branch: bool = True       # full-resolution image features for the mask head (pixel_branch.py)

    @classmethod
    def tiny(cls) -> "ModelConfig":
        """A few-thousand-parameter model for tests: from-scratch U-Net, small decoder."""
        return cls(backbone="unet", backbone_kwargs={"width": 8, "out_channels": 32, "tile": 64},
                   pretrained_backbone=False, train_backbone=True,
                   decoder=DecoderConfig(dim=32, depth=1, heads=2, mlp_dim=64, image_channels=32,
                                         init_from_litemedsam=False), grounding_dim=16)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        d = dict(d)
        d.setdefault("pixel_branch", False)   # checkpoints written before the branch existed
        d["decoder"] = DecoderConfig(**d.get("decoder", {}))
        return cls(**d)


class PromptSegModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = build_backbone(cfg.backbone, pretrained=cfg.pretrained_backbone, **cfg.backbone_kwargs)
        dcfg = cfg.decoder
        if dcfg.image_channels != self.backbone.out_channels:
            raise ValueError(f"decoder image_channels {dcfg.image_channels} != backbone channels {self.backbone.out_channels}")
        self.decoder = PromptDecoder(dcfg)
        self.grounding = GroundingHead(self.backbone.out_channels, dcfg.text_dim, cfg.grounding_dim)
        # Per-token Gaussians for DuSSS's semantic-similarity supervision (training only).
        self.distribution = DistributionHead(cfg.grounding_dim, num_heads=4)
        self.pixel_branch = PixelBranch(dcfg.dim // 8) if cfg.pixel_branch else None
        if not cfg.train_backbone:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    def train(self, mode: bool = True) -> "PromptSegModel":
        """A frozen backbone stays in eval mode: in training mode TinyViT's BatchNorm layers
        would normalise with each batch's statistics (embeddings at cosine ~0.5 to the
        pretrained ones) and overwrite the pretrained running statistics."""
        super().train(mode)
        if not self.cfg.train_backbone:
            self.backbone.eval()
        return self

    @property
    def tile(self) -> int:
        return int(self.backbone.tile)

    @property
    def grid_size(self) -> int:
        return self.tile // int(self.backbone.stride)

    def embed(self, tiles: torch.Tensor) -> torch.Tensor:
        """(T, 3, tile, tile) in [0,1] -> (T, C, tile/4, tile/4)."""
        if self.cfg.train_backbone and self.training:
            return self.backbone(tiles)
        with torch.no_grad():
            return self.backbone(tiles)

    def fine_features(self, pixels: torch.Tensor | None) -> torch.Tensor | None:
        """The pixel branch's features of (T, 3, tile, tile) tiles (uint8 or [0, 1] float), or
        None for a model without the branch. Prompt-independent: compute once per batch."""
        if self.pixel_branch is None:
            return None
        if pixels is None:
            raise ValueError("this model reads image pixels (pixel_branch): pass the tiles' pixels")
        return self.pixel_branch(pixels.to(next(self.pixel_branch.parameters()).device))

    def grounding_logits(self, emb: torch.Tensor, pb: PromptBatch, pix: torch.Tensor | None = None) -> torch.Tensor:
        """Per-query text-similarity logits (N, h, w) on the query's own tile. ``pix``: the
        tiles' grounding pixel features if already computed (they do not depend on the prompt)."""
        pix = gather_rows(self.grounding.pixel_features(emb) if pix is None else pix, pb.image_index)
        txt = self.grounding.text_features(pb.text_pooled)
        return self.grounding.scale * torch.einsum("ndhw,nd->nhw", pix, txt) + self.grounding.bias

    def decode(self, emb: torch.Tensor, pb: PromptBatch, pe: torch.Tensor | None = None,
               pix: torch.Tensor | None = None, fine: torch.Tensor | None = None) -> DecoderOutput:
        """Decode the queries of ``pb`` on tiles ``emb``. ``fine``: :meth:`fine_features` of the
        same tiles (or crops), required when the model has a pixel branch."""
        if self.pixel_branch is not None and fine is None:
            raise ValueError("this model reads image pixels (pixel_branch): pass fine=model.fine_features(pixels)")
        if pb.mask_prompt is None and self.cfg.grounding_prompt:
            # The grounding map is a cheap class-aware prior; the decoder refines it (DuSSS's
            # text-guided mask as a dense prompt). Upsampled to the decoder's mask-input size.
            g = self.grounding_logits(emb, pb, pix)[:, None]
            pb = PromptBatch(**{**vars(pb), "mask_prompt": F.interpolate(g, scale_factor=4.0, mode="bilinear",
                                                                         align_corners=False)})
        if pe is None:
            g = self.grid_size
            pe = self.decoder.dense_pe(g, g)[:, :emb.shape[-2], :emb.shape[-1]]
        return self.decoder(emb, pb, pe, fine)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """What a checkpoint stores: all weights except a frozen pretrained backbone, which
        is reloaded (hash-checked) from its package."""
        skip_backbone = self.cfg.pretrained_backbone and not self.cfg.train_backbone
        return {k: v for k, v in self.state_dict().items() if not (skip_backbone and k.startswith("backbone."))}


def prompt_batch(embs: Sequence[TextEmbedding], lateralities: Sequence[int], n_tiles: int,
                 device: torch.device | str = "cpu") -> PromptBatch:
    """All K prompts on every tile: query n = tile * K + k."""
    k = len(embs)
    pooled = torch.from_numpy(np.stack([e.pooled for e in embs])).float()
    tokens = torch.from_numpy(np.stack([e.tokens for e in embs])).float()
    lengths = torch.tensor([e.n_tokens for e in embs])
    mask = torch.arange(MAX_TOKENS)[None] < lengths[:, None]
    lat = torch.tensor(list(lateralities), dtype=torch.long)
    rep = lambda x: x.repeat(n_tiles, *([1] * (x.dim() - 1))).to(device)  # noqa: E731
    return PromptBatch(image_index=torch.arange(n_tiles).repeat_interleave(k).to(device),
                       text_pooled=rep(pooled), text_tokens=rep(tokens), text_mask=rep(mask),
                       laterality=rep(lat))
