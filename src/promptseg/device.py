"""Which torch device to run on: the one leaf every layer may import."""
from __future__ import annotations

import torch


def resolve_device(device: str | None) -> str:
    """"auto" or None -> cuda, else mps, else cpu; an explicit CUDA device must exist."""
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available here")
    return device


def use_all_cores() -> None:
    """Let torch use every core, unless OMP_NUM_THREADS says otherwise (benchmarks, the demo)."""
    import os

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, os.cpu_count() or 1))
