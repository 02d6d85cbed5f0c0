"""`promptseg gui`: a napari viewer with the PromptSeg dock."""
from __future__ import annotations

import napari


def open_viewer() -> None:
    viewer = napari.Viewer()
    viewer.window.add_plugin_dock_widget("napari-promptseg", "PromptSeg")
    napari.run()
