"""`promptseg gui`: a napari viewer with the PromptSeg dock."""
from __future__ import annotations

import napari


def preload_model_modules() -> None:
    """Import the model's modules (torch, the encoders, the dock) before napari's window exists:
    the extension modules' initialisation holds the interpreter lock, which would otherwise
    stall the GUI thread while the dock's worker imports them."""
    import importlib

    from ..inference.predictor import preload_modules

    importlib.import_module(f"{__package__}.widget")   # the dock's modules
    preload_modules()


def open_viewer() -> None:
    preload_model_modules()
    viewer = napari.Viewer()
    viewer.window.add_plugin_dock_widget("napari-promptseg", "PromptSeg")
    napari.run()
