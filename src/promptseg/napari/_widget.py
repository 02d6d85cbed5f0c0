"""npe2 widget contribution (a small factory so the manifest stays import-light)."""
from __future__ import annotations


def make_widget(napari_viewer):
    from .widget import PromptSegWidget

    return PromptSegWidget(napari_viewer)
