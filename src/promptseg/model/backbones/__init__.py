"""Image backbones by name. Each maps (B,3,T,T) in [0,1] to (B,C,T/4,T/4) tile embeddings."""
from __future__ import annotations

from typing import Any, Callable

import torch.nn as nn


def _builders() -> dict[str, Callable[..., nn.Module]]:
    """Name -> constructor; the modules load on first use."""
    from . import litemedsam, unet

    return {"litemedsam": litemedsam.build, "unet": unet.build}


def build_backbone(name: str, **kwargs: Any) -> nn.Module:
    builders = _builders()
    if name not in builders:
        raise ValueError(f"unknown backbone {name!r}; available: {sorted(builders)}")
    return builders[name](**kwargs)


def available_backbones() -> list[str]:
    return sorted(_builders())
