"""The decoder's image-sized work, done on image tokens kept as (N, h*w, C) rows.

SAM's TwoWayTransformer and mask upscaling, same weights and same result (to float
rounding; tests compare with the vendored modules), rearranged for speed:
- the image tokens stay in row layout from the embedding to the mask: no NCHW <-> token
  transposes of the 4 096 x 256 keys per query;
- projections that read the same tensor share one matrix product (a layer's
  token->image key and image->token query both read ``keys + pe``);
- attention is ``scaled_dot_product_attention``, except with few prompt tokens (H*T <=
  internal dim): then the cross attentions run folded, the projections of the image side
  moved onto the prompt tokens (exact: a key bias is constant along the softmax, softmax
  rows sum to 1), so the products over the L image tokens have H*T columns instead of
  internal dim, and no (N*H, L, T) attention tensors are built;
- without gradients, equal prompt tokens (padding words, padding points, masked
  exemplars) are merged into one with its log multiplicity added to its attention scores
  as a key; equal tokens stay equal through every layer, so the result is the same
  ("nucleus": 19 tokens -> 7, which makes the folded form apply);
- each 2x2 stride-2 transposed convolution is a matrix product per input token, the
  LayerNorm2d between them is one fused ``layer_norm`` over channels, and the four-fold
  upscaled pixels are reordered into image layout only after the hypernetwork has reduced
  them to one channel; on CPU inference the second product and its GELU are one call
  (fused_ops.py).
SAM's layout is kept as the tests' numerical reference (tests/sam_layout.py).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .fused_ops import linear_gelu


Tensor = torch.Tensor


def _heads(x: Tensor, heads: int) -> Tensor:
    n, length, c = x.shape
    return x.view(n, length, heads, c // heads).transpose(1, 2)


def _attend(q: Tensor, k: Tensor, v: Tensor, heads: int, key_bias: Tensor | None = None) -> Tensor:
    """Multi-head attention of already projected q (N,Lq,C), k, v (N,Lk,C) -> (N,Lq,C);
    ``key_bias`` (N,Lk) is added to every score of that key (log multiplicities)."""
    n, lq, c = q.shape
    mask = None if key_bias is None else key_bias[:, None, None, :]
    out = F.scaled_dot_product_attention(_heads(q, heads), _heads(k, heads), _heads(v, heads), attn_mask=mask)
    return out.transpose(1, 2).reshape(n, lq, c)


def _joint_linear(x: Tensor, *layers: nn.Linear) -> list[Tensor]:
    """Several nn.Linear of the same input as one matrix product."""
    w = torch.cat([m.weight for m in layers])
    b = torch.cat([m.bias for m in layers])
    return list(F.linear(x, w, b).split([m.out_features for m in layers], dim=-1))


def _per_head(w: Tensor, heads: int) -> Tensor:
    """A projection weight (H*d, C) as (H, d, C)."""
    return w.view(heads, -1, w.shape[-1])


def _fold(a: nn.Module, tokens: int) -> bool:
    """Whether the cross attention ``a`` with ``tokens`` prompt tokens runs folded (its
    products over the L image tokens have H*T columns instead of the internal dim). Folding
    wins while H*T is at most the internal dim, in inference and in training; training
    batches have T >= 19 (16 padded words), so they stay unfolded."""
    return a.num_heads * tokens <= a.internal_dim


def _token_to_image_folded(a: nn.Module, q_in: Tensor, x: Tensor, v_in: Tensor) -> tuple[Tensor, Tensor]:
    """SAM's Attention(q=q_in (N,T,C), k=x (N,L,C), v=v_in (N,L,C)) and its probabilities
    (N,H,T,L), with no projection of the L image tokens: per head
    q_h (x W_k_h^T + b_k_h)^T = (q_h W_k_h) x^T + a constant per row, which cancels in the
    softmax, and A (v W_v^T + b_v) = (A v) W_v^T + b_v as the rows of A sum to 1."""
    n, t, c = q_in.shape
    h = a.num_heads
    d = a.internal_dim // h
    q = a.q_proj(q_in).view(n, t, h, d) * d ** -0.5
    qk = torch.einsum("nthd,hdc->nhtc", q, _per_head(a.k_proj.weight, h)).reshape(n, h * t, c)
    p = torch.bmm(qk, x.transpose(1, 2)).softmax(-1)                      # (N, H*T, L)
    pv = torch.bmm(p, v_in).view(n, h, t, c)
    o = torch.einsum("nhtc,hdc->nthd", pv, _per_head(a.v_proj.weight, h)).reshape(n, t, h * d)
    return a.out_proj(o + a.v_proj.bias), p.view(n, h, t, -1)


def _image_to_token_folded(a: nn.Module, x: Tensor, keys: Tensor, qp: Tensor, queries: Tensor,
                           log_count: Tensor | None) -> Tensor:
    """``keys`` + SAM's Attention(q=x (N,L,C), k=qp (N,T,C), v=queries), with the query
    projection moved to the token side, (x W_q_h^T + b_q_h) k_h^T = x (W_q_h^T k_h^T) + b_q_h k_h^T
    (the bias term varies along the softmax axis: kept), and the output projection too,
    sum_h A_h (v_h W_o_h^T) + b_o: two products of the image tokens with H*T columns."""
    n, t, c = qp.shape
    h = a.num_heads
    d = a.internal_dim // h
    k = a.k_proj(qp).view(n, t, h, d) * d ** -0.5
    v = a.v_proj(queries).view(n, t, h, d)
    kq = torch.einsum("nthd,hdc->nhtc", k, _per_head(a.q_proj.weight, h)).reshape(n, h * t, c)
    bias = torch.einsum("nthd,hd->nht", k, a.q_proj.bias.view(h, d))
    if log_count is not None:
        bias = bias + log_count[:, None]
    # scores as (N, H*T, L), softmax over T (dim 2 of (N, H, T, L)): much faster on CPU than
    # in (N, L, H, T) layout, where each softmax row is only T long
    s = torch.baddbmm(bias.reshape(n, h * t, 1), kq, x.transpose(1, 2))
    p = s.view(n, h, t, -1).softmax(2).view(n, h * t, -1)
    # each image token's H softmax groups sum to 1 each, so b_o / H on every value row adds b_o
    vo = torch.einsum("nthd,chd->nhtc", v, a.out_proj.weight.view(c, h, d)).reshape(n, h * t, c)
    if not torch.is_grad_enabled():   # inference: nothing reads the old keys again; saves a copy of them
        return keys.baddbmm_(p.transpose(1, 2), vo + a.out_proj.bias / h)
    return torch.baddbmm(keys, p.transpose(1, 2), vo + a.out_proj.bias / h)


def _block(layer: nn.Module, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor,
           log_count: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """One TwoWayAttentionBlock; ``log_count`` (N,T): each token's log multiplicity as a key."""
    sa, t2i, i2t = layer.self_attn, layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
    q = queries if layer.skip_first_layer_pe else queries + query_pe
    qs, ks = _joint_linear(q, sa.q_proj, sa.k_proj)
    out = sa.out_proj(_attend(qs, ks, sa.v_proj(queries), sa.num_heads, log_count))
    queries = layer.norm1(out if layer.skip_first_layer_pe else queries + out)  # SAM's first layer: no residual
    fold = _fold(t2i, queries.shape[1]) and _fold(i2t, queries.shape[1])
    if fold:
        x = keys + key_pe
        out = _token_to_image_folded(t2i, queries + query_pe, x, keys)[0]
    else:   # keys do not change between the two cross attentions: one product for both reads of keys + pe
        k_t2i, q_i2t = _joint_linear(keys + key_pe, t2i.k_proj, i2t.q_proj)
        out = t2i.out_proj(_attend(t2i.q_proj(queries + query_pe), k_t2i, t2i.v_proj(keys), t2i.num_heads))
    queries = layer.norm2(queries + out)
    queries = layer.norm3(queries + layer.mlp(queries))
    qp = queries + query_pe
    if fold:
        keys = _image_to_token_folded(i2t, x, keys, qp, queries, log_count)
    else:
        out = _attend(q_i2t, i2t.k_proj(qp), i2t.v_proj(queries), i2t.num_heads, log_count)
        keys = keys + i2t.out_proj(out)
    return queries, layer.norm4(keys)


def _merge_equal_tokens(tokens: Tensor) -> tuple[Tensor, Tensor, Tensor] | None:
    """Prompt tokens (N,T,C) with equal rows merged: (N,U,C) tokens, their log multiplicity
    (N,U) (-inf: a filler row of a query with fewer distinct tokens) and each original
    token's row (N,T); None if nothing merges. Equal tokens (padding words, points, exemplars)
    stay equal through every layer, and k equal keys weigh as one with log k added to its
    score, so the result is the same."""
    n, t, c = tokens.shape
    eq = (tokens[:, :, None] == tokens[:, None]).all(-1)                   # (N,T,T)
    eq[:, :2] = torch.eye(t, dtype=torch.bool, device=tokens.device)[:2]    # output tokens stay
    eq[:, :, :2] &= torch.eye(t, dtype=torch.bool, device=tokens.device)[:, :2]
    first = eq.to(torch.uint8).argmax(-1)                                   # first equal row
    ar = torch.arange(t, device=tokens.device)
    keep = first == ar
    u = int(keep.sum(1).max())
    if u == t:
        return None
    count = (first[:, :, None] == ar).sum(1)                                # (N,T), 0 if merged away
    order = torch.argsort((~keep).to(torch.uint8), dim=1, stable=True)[:, :u]
    row = (keep.cumsum(1) - 1).gather(1, first)
    merged = tokens.gather(1, order[..., None].expand(-1, -1, c))
    return merged, count.gather(1, order).to(tokens.dtype).log(), row


def two_way(transformer: nn.Module, keys: Tensor, key_pe: Tensor,
            tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """SAM's TwoWayTransformer.forward on row-layout keys (N, h*w, C), key_pe (1 or N, h*w, C)
    and prompt tokens (N, T, C). Returns queries, keys and the mask token's (index 1) final
    attention over the image tokens, averaged over heads (N, h*w)."""
    merged = None
    if not (torch.is_grad_enabled() and tokens.requires_grad):
        # inference only: merging moves the gradient of equal tokens onto one of them
        merged = _merge_equal_tokens(tokens)
    row, log_count = None, None
    if merged is not None:
        tokens, log_count, row = merged
    queries = tokens
    for layer in transformer.layers:
        queries, keys = _block(layer, queries, keys, tokens, key_pe, log_count)
    fa = transformer.final_attn_token_to_image
    if _fold(fa, tokens.shape[1]):
        out, p = _token_to_image_folded(fa, queries + tokens, keys + key_pe, keys)
        attn = p[:, :, 1].mean(1)
    else:
        q = fa.q_proj(queries + tokens)
        k = fa.k_proj(keys + key_pe)
        out = fa.out_proj(_attend(q, k, fa.v_proj(keys), fa.num_heads))
        # the mask token's attention map alone (1 query row), for the token-attention loss
        qm, km = _heads(q[:, 1:2], fa.num_heads), _heads(k, fa.num_heads)
        attn = ((qm @ km.transpose(-1, -2)) / (qm.shape[-1] ** 0.5)).softmax(-1)[:, :, 0].mean(1)
    queries = transformer.norm_final_attn(queries + out)
    if row is not None:
        queries = queries.gather(1, row[..., None].expand(-1, -1, queries.shape[-1]))
    return queries, keys, attn


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
