"""Image backbones by name. Each maps (B,3,T,T) in [0,1] to (B,C,T/4,T/4) tile embeddings."""
from __future__ import annotations

from typing import Any, Callable

import torch.nn as nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = fn
        return fn
    return deco


def build_backbone(name: str, **kwargs: Any) -> nn.Module:
    from . import litemedsam, unet  # noqa: F401  (registers)

    if name not in _REGISTRY:
        raise ValueError(f"unknown backbone {name!r}; available: {sorted(_REGISTRY)}")
    return _REGISTRY[name](**kwargs)


def available_backbones() -> list[str]:
    from . import litemedsam, unet  # noqa: F401

    return sorted(_REGISTRY)
