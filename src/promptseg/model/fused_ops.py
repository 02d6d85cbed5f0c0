"""Convolution / linear + GELU as one oneDNN call on CPU (the fused ops PyTorch's own
compiler emits, ``torch.ops.mkldnn._*_pointwise``); the plain ops elsewhere.

Used for inference only: the fused ops have no autograd, so a forward that needs gradients
takes the plain path. The fused ops are checked once per process against the plain ones and
used only if they exist here and agree.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import torch
import torch.nn.functional as F


def _fused(x: torch.Tensor, *params: torch.Tensor | None) -> bool:
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.bfloat16):
        return False
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, *params)):
        return False
    return fused_ops_work(x.dtype)


def conv_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: Sequence[int],
              stride: Sequence[int], dilation: Sequence[int], groups: int,
              residual: torch.Tensor | None = None, fused: bool | None = None) -> torch.Tensor:
    """gelu(conv2d(x) [+ residual]); oneDNN fuses the residual sum but not a GELU after it."""
    if not (_fused(x, weight, bias) if fused is None else fused):
        y = F.conv2d(x, weight, bias, tuple(stride), tuple(padding), tuple(dilation), groups)
        return F.gelu(y if residual is None else y + residual)
    args = (weight, bias, list(padding), list(stride), list(dilation), groups)
    if residual is None:
        return torch.ops.mkldnn._convolution_pointwise(x, *args, "gelu", [], "none")
    return F.gelu(torch.ops.mkldnn._convolution_pointwise.binary(x, residual, *args, "add", None, None, [], None))


def linear_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                fused: bool | None = None) -> torch.Tensor:
    """gelu(linear(x))."""
    if not (_fused(x, weight, bias) if fused is None else fused):
        return F.gelu(F.linear(x, weight, bias))
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], "none")


@lru_cache(maxsize=None)
def fused_ops_work(dtype: torch.dtype = torch.float32) -> bool:
    """The fused ops exist in this PyTorch build for ``dtype`` (float32 or bfloat16) and give
    the plain ops' result (bfloat16: to its rounding)."""
    try:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(1, 8, 6, 6, generator=g).contiguous(memory_format=torch.channels_last).to(dtype)
        w, b = torch.randn(8, 1, 3, 3, generator=g).to(dtype), torch.randn(8, generator=g).to(dtype)
        lw, lb = torch.randn(16, 8, generator=g).to(dtype), torch.randn(16, generator=g).to(dtype)
        t = x.flatten(2).transpose(1, 2)
        with torch.no_grad():
            pairs = [(conv_gelu(x, w, b, (1, 1), (1, 1), (1, 1), 8, fused=f),
                      conv_gelu(x, w, b, (1, 1), (1, 1), (1, 1), 8, x, fused=f),
                      linear_gelu(t, lw, lb, fused=f)) for f in (True, False)]
        tol = 1e-5 if dtype == torch.float32 else 5e-2
        return all(torch.allclose(a.float(), b.float(), atol=tol, rtol=tol) for a, b in zip(*pairs))
    except (RuntimeError, AttributeError, NotImplementedError):
        # no such op in this build (AttributeError), no kernel for this CPU or build
        # (NotImplementedError), or oneDNN refuses the fusion (RuntimeError): use the plain ops
        return False
