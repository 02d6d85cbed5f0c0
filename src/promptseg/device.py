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
