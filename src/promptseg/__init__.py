"""napari-promptseg: text-prompted medical image segmentation with in-app retraining."""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Predictor", "Prediction", "__version__"]


def __getattr__(name: str):
    # Lazy: `import promptseg` (npe2 discovery, CLI --help) must not pay for torch.
    if name in ("Predictor", "Prediction"):
        from .inference import predictor

        return getattr(predictor, name)
    raise AttributeError(name)
