"""The decoder's image-sized work, done on image tokens kept as (N, h*w, C) rows.

SAM's TwoWayTransformer and mask upscaling, same weights and same result (to float
rounding; tests compare with the vendored modules), rearranged for speed:
- the image tokens stay in row layout from the embedding to the mask: no NCHW <-> token
  transposes of the 4 096 x 256 keys per query;
- projections that read the same tensor share one matrix product (a layer's
  token->image key and image->token query both read ``keys + pe``);
- attention is ``scaled_dot_product_attention``;
- each 2x2 stride-2 transposed convolution is a matrix product per input token, the
  LayerNorm2d between them is one fused ``layer_norm`` over channels, and the four-fold
  upscaled pixels are reordered into image layout only after the hypernetwork has reduced
  them to one channel; on CPU inference the second product and its GELU are one call
  (fused_ops.py).
Speed against SAM's layout (sam_layout.py): docs/benchmarks.md, "Predictor latency".
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .fused_ops import linear_gelu


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    n, length, c = x.shape
    return x.view(n, length, heads, c // heads).transpose(1, 2)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head attention of already projected q (N,Lq,C), k, v (N,Lk,C) -> (N,Lq,C)."""
    n, lq, c = q.shape
    out = F.scaled_dot_product_attention(_heads(q, heads), _heads(k, heads), _heads(v, heads))
    return out.transpose(1, 2).reshape(n, lq, c)


def _joint_linear(x: torch.Tensor, *layers: nn.Linear) -> list[torch.Tensor]:
    """Several nn.Linear of the same input as one matrix product."""
    w = torch.cat([m.weight for m in layers])
    b = torch.cat([m.bias for m in layers])
    return list(F.linear(x, w, b).split([m.out_features for m in layers], dim=-1))


def _block(layer: nn.Module, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor,
           key_pe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One TwoWayAttentionBlock."""
    sa, t2i, i2t = layer.self_attn, layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
    if layer.skip_first_layer_pe:   # SAM's first layer: no positional term, no residual
        queries = layer.norm1(sa(q=queries, k=queries, v=queries))
    else:
        q = queries + query_pe
        queries = layer.norm1(queries + sa(q=q, k=q, v=queries))
    # keys do not change between the two cross attentions: one product for both reads of keys + pe
    k_t2i, q_i2t = _joint_linear(keys + key_pe, t2i.k_proj, i2t.q_proj)
    out = _attend(t2i.q_proj(queries + query_pe), k_t2i, t2i.v_proj(keys), t2i.num_heads)
    queries = layer.norm2(queries + t2i.out_proj(out))
    queries = layer.norm3(queries + layer.mlp(queries))
    qp = queries + query_pe
    out = _attend(q_i2t, i2t.k_proj(qp), i2t.v_proj(queries), i2t.num_heads)
    keys = layer.norm4(keys + i2t.out_proj(out))
    return queries, keys


def two_way(transformer: nn.Module, keys: torch.Tensor, key_pe: torch.Tensor,
            tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SAM's TwoWayTransformer.forward on row-layout keys (N, h*w, C), key_pe (1 or N, h*w, C)
    and prompt tokens (N, L, C). Returns queries, keys and the mask token's (index 1) final
    attention over the image tokens, averaged over heads (N, h*w)."""
    queries = tokens
    for layer in transformer.layers:
        queries, keys = _block(layer, queries, keys, tokens, key_pe)
    fa = transformer.final_attn_token_to_image
    q = fa.q_proj(queries + tokens)
    k = fa.k_proj(keys + key_pe)
    out = _attend(q, k, fa.v_proj(keys), fa.num_heads)
    queries = transformer.norm_final_attn(queries + fa.out_proj(out))
    # the mask token's attention map alone (1 query row), for the token-attention loss
    qm, km = _heads(q[:, 1:2], fa.num_heads), _heads(k, fa.num_heads)
    attn = ((qm @ km.transpose(-1, -2)) / (qm.shape[-1] ** 0.5)).softmax(-1)
    return queries, keys, attn[:, :, 0].mean(1)


def _conv_t_as_linear(conv: nn.ConvTranspose2d) -> tuple[torch.Tensor, torch.Tensor]:
    """A 2x2 stride-2 ConvTranspose2d as (out 2*2*Cout, in Cin) weight and bias, output order
    (a, b, c): row offset a, column offset b, channel c."""
    if conv.kernel_size != (2, 2) or conv.stride != (2, 2) or conv.padding != (0, 0):
        raise ValueError("only 2x2 stride-2 transposed convolutions map to a per-token product")
    w = conv.weight.permute(2, 3, 1, 0).reshape(-1, conv.in_channels)   # (a, b, cout) x cin
    return w, conv.bias.repeat(4)


def upscaled_masks(upscaling: nn.Sequential, keys: torch.Tensor, hyper: torch.Tensor,
                   hw: tuple[int, int], fine: torch.Tensor | None = None) -> torch.Tensor:
    """The decoder's mask head: ``upscaling`` (ConvT 2x2, LayerNorm2d, GELU, ConvT 2x2, GELU)
    of row-layout keys (N, h*w, C), plus optional ``fine`` (N, C/8, 4h, 4w) features, dotted
    with the hypernetwork output ``hyper`` (N, C/8) -> mask logits (N, 4h, 4w)."""
    conv1, ln, _, conv2, _ = upscaling
    n, (h, w) = keys.shape[0], hw
    w1, b1 = _conv_t_as_linear(conv1)
    w2, b2 = _conv_t_as_linear(conv2)
    c1, c2 = conv1.out_channels, conv2.out_channels
    x = F.linear(keys, w1, b1).view(n, h * w * 4, c1)                     # rows (i, j, a, b)
    x = F.gelu(F.layer_norm(x, (c1,), ln.weight, ln.bias, ln.eps))
    x = linear_gelu(x, w2, b2).view(n, h, w, 2, 2, 2, 2, c2)              # (i, j, a, b, a2, b2, c)
    if fine is not None:
        # image row 4i + 2a + a2, column 4j + 2b + b2
        f = fine.reshape(n, c2, h, 2, 2, w, 2, 2).permute(0, 2, 5, 3, 6, 4, 7, 1)
        x = x + f.to(x.dtype)
    m = torch.bmm(x.reshape(n, -1, c2), hyper[:, :, None].to(x.dtype))    # (N, rows, 1)
    m = m.view(n, h, w, 2, 2, 2, 2).permute(0, 1, 3, 5, 2, 4, 6)          # (i, a, a2, j, b, b2)
    return m.reshape(n, 4 * h, 4 * w)
