"""Replay a frozen image encoder as one CUDA graph.

TinyViT on four 256² tiles is a few hundred small kernels; on a large GPU their launch
overhead, not the arithmetic, sets the embedding time. A graph captured once for a fixed
batch replays them with one launch. The weights must not move or be replaced afterwards
(the graph holds their addresses), so this is for a frozen encoder in a Predictor.
"""
from __future__ import annotations

import threading

import torch
import torch.nn as nn


class GraphedEncoder:
    """Call like the encoder on up to ``batch`` tiles (N, 3, tile, tile) already on the
    device; returns a fresh tensor (N, C, h, w)."""

    def __init__(self, encoder: nn.Module, batch: int, tile: int, device: torch.device | str, warmup: int = 3):
        if not str(device).startswith("cuda"):
            raise ValueError("CUDA graphs need a CUDA device")
        self.batch = batch
        self._lock = threading.Lock()   # one static input buffer: replays must not interleave
        self._in = torch.zeros(batch, 3, tile, tile, device=device)
        side = torch.cuda.Stream(device=device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.no_grad(), torch.cuda.stream(side):   # warm-up off the default stream (cuDNN/cuBLAS setup)
            for _ in range(warmup):
                encoder(self._in)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: a GUI may run CUDA work on other threads while this one captures
        with torch.no_grad(), torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self._out = encoder(self._in)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if n > self.batch:
            raise ValueError(f"the graph was captured for {self.batch} tiles, got {n}")
        with self._lock:
            self._in[:n].copy_(x)
            if n < self.batch:
                self._in[n:].zero_()
            self.graph.replay()
            return self._out[:n].clone()
