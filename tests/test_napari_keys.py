"""Keyboard shortcuts on a real viewer: key presses on the canvas drive the dock."""
import numpy as np
import pytest
from qtpy.QtCore import Qt

from test_napari_project import open_dock, tiny_project

napari = pytest.importorskip("napari")
pytestmark = pytest.mark.gui


def press(viewer, qtbot, key):
    canvas = viewer.window._qt_viewer.canvas.native
    qtbot.keyClick(canvas, key, Qt.ShiftModifier)


def test_shift_keys_propose_accept_and_next(make_napari_viewer, qtbot, tmp_path):
    from promptseg.napari.shortcuts import SHORTCUTS

    project = tiny_project(tmp_path)
    viewer, widget = open_dock(make_napari_viewer, project)
    for key, _, label, _ in SHORTCUTS:                          # the help text lists every binding
        assert key.replace("-", "+") in widget.keys_help.text() and label.lower() in widget.keys_help.text()
    rng = np.random.default_rng(2)
    for name in ("k1", "k2"):
        viewer.add_image(rng.random((48, 48)).astype(np.float32), name=name)
    widget.project_panel.images.add_layers_btn.click()
    widget.image_combo.setCurrentText("k1")
    widget.prompt_edit.setText("nucleus")

    press(viewer, qtbot, Qt.Key_P)
    qtbot.waitUntil(lambda: "k1 promptseg" in viewer.layers and viewer.layers["k1 promptseg"].visible and widget._worker is None, timeout=180_000)
    labels = viewer.layers["k1 promptseg"]
    viewer.layers.selection.active = labels               # a Labels layer: plain P would be its paint mode
    mode = labels.mode
    labels.data = np.ones_like(labels.data)
    press(viewer, qtbot, Qt.Key_A)
    assert "accepted k1" in widget.project_panel.accept_msg.text() and labels.mode == mode
    press(viewer, qtbot, Qt.Key_N)
    assert widget.image_combo.currentText() == "k2" and "Next → k2" in widget.project_panel.images.reason.text()
