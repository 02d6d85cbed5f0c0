"""The plugin in a real napari viewer (run under Xvfb: `xvfb-run -a pytest`)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytestmark = pytest.mark.gui


def _shot(viewer, name):
    folder = os.environ.get("PROMPTSEG_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        viewer.screenshot(str(Path(folder) / name), canvas_only=False)


def test_manifest_validates_and_napari_lists_the_plugin():
    out = subprocess.run([sys.executable, "-m", "npe2", "validate", "napari-promptseg"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    assert "napari-promptseg" in pm._manifests
    keys = {s.key for s in pm.get_manifest("napari-promptseg").contributions.sample_data}
    assert keys == {"nuclei", "brain"}


def test_sample_data_opens_with_class_names(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-promptseg", "brain")
    gt = [ly for ly in viewer.layers if ly.name.endswith("ground truth")][0]
    assert "thalamus" in list(gt.features["class"])
    assert gt.data.max() > 5


def test_widget_proposes_a_named_labels_layer(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-promptseg", "nuclei")
    _, widget = viewer.window.add_plugin_dock_widget("napari-promptseg", "PromptSeg")
    assert widget.image_combo.currentText() == "nuclei_00"

    widget.prompt_edit.setText("   ")          # empty prompt: a message, nothing else happens
    widget.propose_btn.click()
    assert "empty prompt" in widget.status.text()
    n_layers = len(viewer.layers)

    widget.prompt_edit.setText("nucleus")
    widget.propose_btn.click()
    qtbot.waitUntil(lambda: "nuclei_00 promptseg" in viewer.layers, timeout=180_000)
    layer = viewer.layers["nuclei_00 promptseg"]
    assert len(viewer.layers) == n_layers + 1
    assert list(layer.features["class"]) == ["background", "nucleus"]
    assert layer.data.shape == (256, 256)
    assert "nucleus:" in widget.presence.text()
    qtbot.waitUntil(lambda: widget.propose_btn.isEnabled(), timeout=10_000)
    _shot(viewer, "propose.png")

    # The threshold slider re-merges cached probabilities without re-running the model.
    _, r = widget._last
    widget.threshold.setValue(95)
    assert np.array_equal(layer.data > 0, r.probs[0] >= 0.95)
    widget.threshold.setValue(5)
    assert np.array_equal(layer.data > 0, r.probs[0] >= 0.05)

    # A second proposal updates the same layer instead of piling up layers.
    widget.prompt_edit.setText("nucleus; background")
    widget.propose_btn.click()
    qtbot.waitUntil(lambda: list(viewer.layers["nuclei_00 promptseg"].features["class"]) ==
                    ["background", "nucleus", "background"] or "⚠" in widget.status.text(), timeout=120_000)
    assert len(viewer.layers) == n_layers + 1


def test_widget_reports_bad_layers(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((2, 3, 32, 32)), name="4d")
    _, widget = viewer.window.add_plugin_dock_widget("napari-promptseg", "PromptSeg")
    widget.prompt_edit.setText("nucleus")
    widget.propose_btn.click()
    assert "4 dimensions" in widget.status.text()
    img = np.random.default_rng(0).random((32, 32))
    img[3:5, 3:5] = np.nan                      # a few bad pixels, e.g. from a failed reconstruction
    viewer.add_image(img, name="nan")
    widget.image_combo.setCurrentText("nan")
    widget.propose_btn.click()
    qtbot.waitUntil(lambda: "NaN" in widget.status.text(), timeout=120_000)  # status: see widget
    assert "nan promptseg" not in viewer.layers
