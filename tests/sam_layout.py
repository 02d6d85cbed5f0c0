"""Test helper: the prompt decoder computed the way SAM's code lays it out (NCHW image tokens,
SAM's own attention blocks and upscaling modules), the numerical reference that
test_token_layout.py compares the token-layout path (model/token_layout.py) against."""
from __future__ import annotations

import torch

from promptseg.model.decoder import DecoderOutput


def sam_layout_decode(dec, image_emb: torch.Tensor, pb, pe: torch.Tensor | None = None,
                      fine: torch.Tensor | None = None):
    """``PromptDecoder.forward`` with SAM's module calls (``dec``: a PromptDecoder)."""
    src = dec.neck(image_emb)[pb.image_index]
    n, d, h, w = src.shape
    if pb.mask_prompt is not None:
        src = src + dec.mask_downscaling(pb.mask_prompt)
    else:
        src = src + dec.no_mask_embed.weight.reshape(1, d, 1, 1)
    pos = (pe if pe is not None else dec.dense_pe(h, w)).to(src.dtype)
    out_tokens = torch.cat([dec.presence_token.weight, dec.mask_token.weight], 0).expand(n, -1, -1)
    tokens = torch.cat([out_tokens, dec.prompt_tokens(pb, (h, w)).to(src.dtype)], dim=1)
    t, fa = dec.transformer, dec.transformer.final_attn_token_to_image
    queries, keys = tokens, src.flatten(2).transpose(1, 2)
    key_pe = pos.unsqueeze(0).expand(n, -1, -1, -1).flatten(2).transpose(1, 2)
    for layer in t.layers:
        queries, keys = layer(queries=queries, keys=keys, query_pe=tokens, key_pe=key_pe)
    q = fa._separate_heads(fa.q_proj(queries + tokens), fa.num_heads)
    k = fa._separate_heads(fa.k_proj(keys + key_pe), fa.num_heads)
    attn = ((q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5).softmax(-1)[:, :, 1].mean(1)
    queries = t.norm_final_attn(queries + fa(q=queries + tokens, k=keys + key_pe, v=keys))
    up = dec.output_upscaling(keys.transpose(1, 2).reshape(n, d, h, w))
    if fine is not None:
        up = up + fine[pb.image_index].to(up.dtype)
    masks = torch.einsum("nc,nchw->nhw", dec.hypernetwork(queries[:, 1]), up)
    return DecoderOutput(masks, dec.presence_head(queries[:, 0])[:, 0], attn, queries[:, 1])
