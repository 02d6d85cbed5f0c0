"""The frozen encoder in reduced precision, for a Predictor's embeddings (opt-in).

- GPU: float16, replayed as CUDA graphs: eager float16 gains nothing, because one pass is
  hundreds of small kernels whose launches cost more CPU time than the GPU spends on them; a
  graph replays them without the launches. Compiled first by inductor (fused elementwise
  kernels), the graph replays faster still, after a compile of the encoder on the first
  image of each process: opt-in (``compiled=True``).
- CPU: a bfloat16 copy of the fast inference encoder (tinyvit_inference.py, its fused
  oneDNN ops in bfloat16), for CPUs with native bfloat16 (AVX512-BF16, AMX).
Speed and mask agreement with float32: docs/benchmarks.md, "Predictor latency" and "Encoder
precision".
Both are for embeddings only; training and the embedding caches stay float32.
"""
from __future__ import annotations

import threading

import torch
import torch.nn as nn

from .tinyvit_inference import inference_copy, weights_key


def _check_backbone(backbone: nn.Module, what: str) -> None:
    if not hasattr(backbone, "encoder") or getattr(backbone, "norm", "pretrained") != "pretrained":
        raise ValueError(f"the {what} encoder needs the litemedsam backbone with its pretrained "
                         "BatchNorm statistics")


class GraphedEncoder:
    """A frozen encoder replayed as one CUDA graph captured for a fixed batch. Call like the
    encoder on up to ``batch`` tiles (N, 3, tile, tile) already on the device; returns a fresh
    tensor (N, C, h, w). Capture under an autocast context to capture its dtype."""

    def __init__(self, encoder: nn.Module, batch: int, tile: int, device: torch.device | str, warmup: int = 3):
        if torch.device(device).type != "cuda":
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


class _FrozenCopies:
    """What both reduced-precision encoders share: eval-mode no-grad use only, and whatever they
    built from the backbone (graphs, a copy) is dropped when the backbone's weights change.
    Call ``_current()`` under ``self._lock``."""

    def __init__(self, backbone: nn.Module, what: str):
        _check_backbone(backbone, what)
        self.backbone = backbone
        self.what = what
        self._key: tuple | None = None
        self._lock = threading.Lock()

    def _check_mode(self) -> None:
        if self.backbone.training or torch.is_grad_enabled():
            raise RuntimeError(f"the {self.what} encoder is for eval-mode, no-grad embedding")

    def _weights_changed(self) -> bool:
        key = weights_key(self.backbone.encoder)
        changed, self._key = key != self._key, key
        return changed


class HalfGraphEncoder(_FrozenCopies):
    """``backbone``'s eval-mode forward in float16 as CUDA graphs, one per tile count (captured
    on the first call with that count, again when the backbone's weights change). Returns
    float16 embeddings; callers cast. Thread-safe: captures and replays are serialised.
    ``compiled``: the graphs replay the encoder as compiled by ``torch.compile`` (inductor),
    compiled on the first call (slow; inductor's on-disk cache shortens later processes)."""

    def __init__(self, backbone: nn.Module, device: torch.device | str, compiled: bool = False):
        if torch.device(device).type != "cuda":
            raise ValueError("the float16 graph encoder needs a CUDA device; on the CPU use float32")
        super().__init__(backbone, "compiled float16 graph" if compiled else "float16 graph")
        self.device = torch.device(device)
        self.compiled = compiled
        self._graphs: dict[int, GraphedEncoder] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self._check_mode()
        n = x.shape[0]
        with self._lock:
            if self._weights_changed():
                self._graphs.clear()
            graph = self._graphs.get(n)
            if graph is None:
                module = self._compiled() if self.compiled else self.backbone
                try:
                    # no autocast weight cache: cached half weights would be freed under the graph
                    with torch.autocast("cuda", dtype=torch.float16, cache_enabled=False):
                        graph = GraphedEncoder(module, n, self.backbone.tile, self.device)
                except Exception as exc:   # out of memory, a driver without graphs, no compiler for inductor
                    hint = "'float16' or 'float32'" if self.compiled else "'float32' (untick Fast mode)"
                    raise RuntimeError(f"capturing the {self.what} encoder failed ({type(exc).__name__}: {exc}); "
                                       f"use encoder_precision={hint}") from exc
                self._graphs[n] = graph
        return graph(x.to(self.device))

    def _compiled(self):
        # the folded inference copy, built here eagerly: traced inside the backbone's forward,
        # its BatchNorm folding re-compiled per layer until dynamo's recompile limit
        fast = self.backbone._inference_encoder()
        compiled = torch.compile(fast, dynamic=False)   # static shapes: one program per tile count
        return lambda x: compiled(x.contiguous(memory_format=torch.channels_last)).contiguous()


def bfloat16_supported() -> bool:
    """Whether this CPU runs bfloat16 natively in oneDNN (elsewhere it is emulated, slower
    than float32)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class BFloat16Encoder(_FrozenCopies):
    """``backbone``'s fast eval-mode encoder as a bfloat16 copy on the CPU (rebuilt when the
    backbone's weights change). Takes float32 tiles, returns float32 embeddings."""

    def __init__(self, backbone: nn.Module, device: torch.device | str):
        if torch.device(device).type != "cpu":
            raise ValueError("the bfloat16 encoder is for the CPU; on CUDA use float16")
        if not bfloat16_supported():
            raise ValueError("this CPU has no native bfloat16 (AVX512-BF16 or AMX): bfloat16 would be "
                             "slower than float32 here; use float32")
        super().__init__(backbone, "bfloat16")
        self._copy: nn.Module | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self._check_mode()
        with self._lock:
            if self._weights_changed():
                self._copy = inference_copy(self.backbone.encoder).to(torch.bfloat16)
            enc = self._copy
        x = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        return enc(x).float().contiguous()
