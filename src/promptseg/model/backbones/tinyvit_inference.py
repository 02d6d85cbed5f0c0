"""An inference copy of the TinyViT encoder: same weights and result, faster on CPU.

- every convolution + BatchNorm pair (eval mode: fixed statistics) becomes one convolution,
  which lets the encoder's convolution + GELU pairs (and MBConv's residual sum) run as one
  fused oneDNN call each (tinyvit.py, fused_ops.py);
- channels-last memory: the first stage runs depthwise and 1x1 convolutions on full-size
  feature maps, which oneDNN runs much faster on NHWC tensors.
Measured speed-ups: docs/benchmarks.md, "Predictor latency".
Only for eval-mode, no-grad forwards: a copy is built lazily and rebuilt when the weights
change (see ``LiteMedSAMBackbone``).
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from .tinyvit import ConvBN


def _fold_batchnorm(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, ConvBN):
            setattr(module, name, child.folded())
        else:
            _fold_batchnorm(child)


def inference_copy(encoder: nn.Module) -> nn.Module:
    """A frozen, eval-mode copy of a TinyViT ``encoder`` with its BatchNorm folded, channels-last."""
    enc = copy.deepcopy(encoder).eval().requires_grad_(False)
    _fold_batchnorm(enc)
    return enc.to(memory_format=torch.channels_last)


def weights_key(module: nn.Module) -> tuple:
    """Changes whenever a parameter or buffer of ``module`` is replaced, moved or updated in
    place (optimiser steps, ``load_state_dict``, ``.to(device)``)."""
    return tuple((t.data_ptr(), t._version, t.device.type, t.dtype)
                 for t in (*module.parameters(), *module.buffers()))
