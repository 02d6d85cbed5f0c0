"""SAM-style prompt decoder: two-way attention between image tokens and prompt tokens.

Prompt tokens per query: projected text (pooled + word tokens, plus a learned laterality
embedding), optional points / a box (SAM's Fourier encoding), optional exemplar tokens
(mask-pooled features of accepted labels); an optional dense mask prompt is added to the
image tokens. One forward pass decodes N = (tiles x prompts) queries. With
``init_from_litemedsam`` the shared parts start from LiteMedSAM's pretrained decoder.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .token_layout import two_way, upscaled_masks


def _sam_modules():
    from .backbones.litemedsam_files import sam_modeling

    sam = sam_modeling()
    return sam.common.LayerNorm2d, sam.mask_decoder.MLP, sam.prompt_encoder.PositionEmbeddingRandom, \
        sam.transformer.TwoWayTransformer


@dataclass
class DecoderConfig:
    """The text-conditioned decoder's sizes; the defaults are LiteMedSAM's mask decoder."""
    dim: int = 256                      # token and feature width of the two-way transformer
    depth: int = 2                      # two-way transformer blocks
    heads: int = 8                      # attention heads per block
    mlp_dim: int = 2048                 # hidden width of each block's MLP
    text_dim: int = 384                 # width of the text encoder's tokens (MiniLM)
    image_channels: int = 256           # channels of the image encoder's embedding
    init_from_litemedsam: bool = True   # start from LiteMedSAM's pretrained decoder weights


@dataclass
class PromptBatch:
    """N decoding queries over B image tiles. Optional fields may be None."""
    image_index: torch.Tensor           # (N,) long, which tile each query decodes
    text_pooled: torch.Tensor           # (N, text_dim)
    text_tokens: torch.Tensor           # (N, L, text_dim)
    text_mask: torch.Tensor             # (N, L) bool, True = real token
    laterality: torch.Tensor            # (N,) long 0/1/2
    points: torch.Tensor | None = None  # (N, P, 2) xy in tile pixels
    point_labels: torch.Tensor | None = None  # (N, P) 1 fg, 0 bg, -1 padding
    boxes: torch.Tensor | None = None   # (N, 4) x0 y0 x1 y1 in tile pixels; NaN row = no box
    mask_prompt: torch.Tensor | None = None  # (N, 1, 4h, 4w) logits of a previous prediction
    exemplars: torch.Tensor | None = None    # (N, E, C) exemplar feature vectors
    exemplar_mask: torch.Tensor | None = None  # (N, E) bool


@dataclass
class DecoderOutput:
    mask_logits: torch.Tensor   # (N, 4h, 4w)
    presence_logit: torch.Tensor  # (N,)
    attention: torch.Tensor     # (N, h*w) mask token's final attention over image tokens
    mask_token: torch.Tensor    # (N, dim)


class PromptDecoder(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        LayerNorm2d, MLP, PositionEmbeddingRandom, TwoWayTransformer = _sam_modules()
        d = cfg.dim
        self.cfg = cfg
        self.neck = nn.Identity() if cfg.image_channels == d else nn.Conv2d(cfg.image_channels, d, 1)
        self.transformer = TwoWayTransformer(depth=cfg.depth, embedding_dim=d, mlp_dim=cfg.mlp_dim, num_heads=cfg.heads)
        self.presence_token = nn.Embedding(1, d)
        self.mask_token = nn.Embedding(1, d)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(d, d // 4, 2, 2), LayerNorm2d(d // 4), nn.GELU(),
            nn.ConvTranspose2d(d // 4, d // 8, 2, 2), nn.GELU())
        self.hypernetwork = MLP(d, d, d // 8, 3)
        self.presence_head = MLP(d, 256, 1, 3)
        # Prompt encoding (SAM layout so pretrained weights map 1:1).
        self.pe_layer = PositionEmbeddingRandom(d // 2)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, d) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, d)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, 4, 2, 2), LayerNorm2d(4), nn.GELU(),
            nn.Conv2d(4, 16, 2, 2), LayerNorm2d(16), nn.GELU(), nn.Conv2d(16, d, 1))
        self.no_mask_embed = nn.Embedding(1, d)
        # Text and exemplar projections are new: trained in stage 1.
        self.text_pooled_proj = MLP(cfg.text_dim, d, d, 2)
        self.text_token_proj = nn.Linear(cfg.text_dim, d)
        self.text_pad = nn.Embedding(1, d)
        self.laterality = nn.Embedding(3, d)
        nn.init.zeros_(self.laterality.weight)
        self.exemplar_proj = nn.Linear(cfg.image_channels, d)
        self.exemplar_type = nn.Embedding(1, d)
        if cfg.init_from_litemedsam:
            self.load_litemedsam()

    def load_litemedsam(self) -> None:
        from .backbones.litemedsam import sub_state

        if self.cfg.dim != 256 or self.cfg.depth != 2 or self.cfg.mlp_dim != 2048:
            raise ValueError("init_from_litemedsam needs dim=256, depth=2, mlp_dim=2048")
        dec, pe = sub_state("mask_decoder."), sub_state("prompt_encoder.")
        self.transformer.load_state_dict({k[12:]: v for k, v in dec.items() if k.startswith("transformer.")})
        self.output_upscaling.load_state_dict({k[17:]: v for k, v in dec.items() if k.startswith("output_upscaling.")})
        self.hypernetwork.load_state_dict({k[28:]: v for k, v in dec.items() if k.startswith("output_hypernetworks_mlps.0.")})
        with torch.no_grad():
            self.mask_token.weight.copy_(dec["mask_tokens.weight"][:1])
            self.presence_token.weight.copy_(dec["iou_token.weight"])
            ph = {k[20:]: v for k, v in dec.items() if k.startswith("iou_prediction_head.")}
            last = max(int(k.split(".")[1]) for k in ph)
            ph[f"layers.{last}.weight"] = ph[f"layers.{last}.weight"][:1]
            ph[f"layers.{last}.bias"] = ph[f"layers.{last}.bias"][:1]
            self.presence_head.load_state_dict(ph)
        self.pe_layer.load_state_dict({k[9:]: v for k, v in pe.items() if k.startswith("pe_layer.")})
        for i in range(4):
            self.point_embeddings[i].weight.data.copy_(pe[f"point_embeddings.{i}.weight"])
        self.not_a_point_embed.weight.data.copy_(pe["not_a_point_embed.weight"])
        self.mask_downscaling.load_state_dict({k[17:]: v for k, v in pe.items() if k.startswith("mask_downscaling.")})
        self.no_mask_embed.weight.data.copy_(pe["no_mask_embed.weight"])

    # -- prompt tokens -------------------------------------------------------------
    def dense_pe(self, h: int, w: int, tile_hw: tuple[int, int] | None = None) -> torch.Tensor:
        """Positional encoding of an (h, w) token grid; a crop of a larger grid keeps the
        coordinates of the full grid so training on crops matches inference on tiles."""
        th, tw = tile_hw or (h, w)
        return self.pe_layer((th, tw))[:, :h, :w]

    def _points_tokens(self, pts: torch.Tensor, labels: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
        size = (grid_hw[0] * 4, grid_hw[1] * 4)
        emb = self.pe_layer.forward_with_coords(pts + 0.5, size)
        emb = torch.where((labels == -1)[..., None], self.not_a_point_embed.weight.expand_as(emb), emb)
        emb = emb + torch.where((labels == 0)[..., None], self.point_embeddings[0].weight, 0.0)
        emb = emb + torch.where((labels == 1)[..., None], self.point_embeddings[1].weight, 0.0)
        return emb

    def prompt_tokens(self, pb: PromptBatch, grid_hw: tuple[int, int]) -> torch.Tensor:
        n = pb.text_pooled.shape[0]
        lat = self.laterality(pb.laterality)
        pooled = (self.text_pooled_proj(pb.text_pooled) + lat)[:, None]
        words = self.text_token_proj(pb.text_tokens) + lat[:, None]
        words = torch.where(pb.text_mask[..., None], words, self.text_pad.weight.expand_as(words))
        parts = [pooled, words]
        if pb.points is not None:
            parts.append(self._points_tokens(pb.points, pb.point_labels, grid_hw))
        if pb.boxes is not None:
            has = ~torch.isnan(pb.boxes).any(-1)
            corners = torch.nan_to_num(pb.boxes).reshape(n, 2, 2) + 0.5
            emb = self.pe_layer.forward_with_coords(corners, (grid_hw[0] * 4, grid_hw[1] * 4))
            emb[:, 0] += self.point_embeddings[2].weight[0]
            emb[:, 1] += self.point_embeddings[3].weight[0]
            parts.append(torch.where(has[:, None, None], emb, self.not_a_point_embed.weight.expand_as(emb)))
        if pb.exemplars is not None:
            ex = self.exemplar_proj(pb.exemplars) + self.exemplar_type.weight
            keep = pb.exemplar_mask if pb.exemplar_mask is not None else torch.ones(ex.shape[:2], dtype=torch.bool, device=ex.device)
            parts.append(torch.where(keep[..., None], ex, self.not_a_point_embed.weight.expand_as(ex)))
        return torch.cat(parts, dim=1)

    def dense_parts_to(self, dtype: torch.dtype) -> "PromptDecoder":
        """Run the image-sized work (two-way transformer, mask upscaling, hypernetwork) in
        ``dtype``; prompt encoders and heads stay float32, outputs are float32. For a
        Predictor's bfloat16 decoder on a CPU (model/backbones/reduced_precision.py)."""
        for m in (self.transformer, self.output_upscaling, self.hypernetwork):
            m.to(dtype)
        return self

    # -- decoding ------------------------------------------------------------------
    def forward(self, image_emb: torch.Tensor, pb: PromptBatch,
                pe: torch.Tensor | None = None, fine: torch.Tensor | None = None) -> DecoderOutput:
        """image_emb (B, C, h, w) tile embeddings; pe optional (dim, h, w) positional encoding;
        fine optional (B, dim/8, 4h, 4w) full-resolution features added to the upscaled mask
        features (pixel_branch.py). The image-sized work runs in token layout (token_layout.py)."""
        h, w = image_emb.shape[-2:]
        src = gather_rows(self.neck(image_emb).flatten(2).transpose(1, 2), pb.image_index)   # (N, h*w, d)
        if pb.mask_prompt is not None:
            keys = src + self._dense_prompt(pb.mask_prompt)
        else:
            keys = src + self.no_mask_embed.weight
        pos = pe if pe is not None else self.dense_pe(h, w)
        key_pe = pos.flatten(1).t().contiguous()[None].to(keys.dtype)           # (1, h*w, d)
        n = keys.shape[0]
        out_tokens = torch.cat([self.presence_token.weight, self.mask_token.weight], 0).expand(n, -1, -1)
        tokens = torch.cat([out_tokens, self.prompt_tokens(pb, (h, w)).to(keys.dtype)], dim=1)
        dense = next(self.transformer.parameters()).dtype   # bfloat16 after dense_parts_to
        if dense != torch.float32:
            keys, key_pe, tokens = keys.to(dense), key_pe.to(dense), tokens.to(dense)
        queries, keys, attn = two_way(self.transformer, keys, key_pe, tokens)
        hyper = self.hypernetwork(queries[:, 1])
        masks = upscaled_masks(self.output_upscaling, keys, hyper, (h, w),
                               None if fine is None else gather_rows(fine, pb.image_index))
        if dense != torch.float32:
            queries, masks, attn = queries.float(), masks.float(), attn.float()
        presence = self.presence_head(queries[:, 0])[:, 0]
        return DecoderOutput(masks, presence, attn, queries[:, 1])

    def _dense_prompt(self, mask_prompt: torch.Tensor) -> torch.Tensor:
        """SAM's mask_downscaling of (N, 1, 4h, 4w) logits, as (N, h*w, d) tokens: the last
        1x1 convolution is applied as a product on 16-channel tokens, so only a 16-channel map
        is transposed."""
        *small, last = self.mask_downscaling
        x = mask_prompt
        for m in small:
            x = m(x)
        return F.linear(x.flatten(2).transpose(1, 2), last.weight.flatten(1), last.bias)


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[index]``, without the copy when ``index`` is 0..len(x)-1 (one query per tile: a
    single prompt), which is a 16 MB gather per decode of a 512² image."""
    if len(index) == len(x) and index.device.type == "cpu" and torch.equal(index, torch.arange(len(x))):
        return x
    return x[index]
