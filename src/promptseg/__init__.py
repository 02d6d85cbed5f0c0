"""napari-promptseg: text-prompted medical image segmentation with in-app retraining."""
from __future__ import annotations

import os as _os

# torch then puts large CPU tensors on transparent huge pages (it reads this once, at its first
# large allocation): the encoder's full-resolution feature maps no longer page-fault on every
# forward. A value the user set is kept.
_os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"
__all__ = ["Predictor", "Prediction", "__version__"]


def __getattr__(name: str):
    # Lazy: `import promptseg` (npe2 discovery, CLI --help) must not pay for torch.
    if name in ("Predictor", "Prediction"):
        from .inference import predictor

        return getattr(predictor, name)
    raise AttributeError(name)
