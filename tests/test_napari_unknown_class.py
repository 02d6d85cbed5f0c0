"""An unknown class is said out loud in the dock, not shown as an empty layer with a confident
uncertainty (real viewer, default model, bundled sample)."""
import os
from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytestmark = pytest.mark.gui


def _propose(widget, qtbot, text):
    widget.prompt_edit.setText(text)
    widget.propose_btn.click()
    qtbot.waitUntil(lambda: widget._worker is None and widget.propose_btn.isEnabled(), timeout=180_000)


def test_unknown_class_is_said_not_shown(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.window.resize(1300, 950)
    viewer.open_sample("napari-promptseg", "nuclei")
    _, widget = viewer.window.add_plugin_dock_widget("napari-promptseg", "PromptSeg")
    for ly in viewer.layers:   # the sample's own gold layer would read as a result in the screenshot
        ly.visible = ly.visible and not ly.name.endswith("ground truth")
    shown = [ly.name for ly in viewer.layers if ly.visible]

    _propose(widget, qtbot, "spleen")
    status = widget.status.text()
    assert "PromptSeg has not learnt 'spleen' yet: draw a box or click on one" in status
    assert "uncertainty" not in status and widget.presence.text() == ""
    # no mask on screen: the proposal layer made ahead of the first mask, if there, stays hidden and empty
    assert [ly.name for ly in viewer.layers if ly.visible] == shown
    ahead = viewer.layers["nuclei_00 promptseg"] if "nuclei_00 promptseg" in viewer.layers else None
    assert ahead is None or (not ahead.visible and not np.any(ahead.data))
    folder = os.environ.get("PROMPTSEG_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        viewer.screenshot(str(Path(folder) / "unknown_class.png"), canvas_only=False)

    # a known class next to an unknown one: the known mask shows, the unknown one is named, not drawn
    _propose(widget, qtbot, "nucleus; left kidney")
    layer = viewer.layers["nuclei_00 promptseg"]
    assert list(layer.features["class"]) == ["background", "nucleus", "left kidney"]
    assert (np.asarray(layer.data) == 1).any() and not (np.asarray(layer.data) == 2).any()
    assert "left kidney: not learnt" in widget.presence.text()
    assert "has not learnt 'left kidney'" in widget.status.text()
