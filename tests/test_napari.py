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
    qtbot.waitUntil(lambda: widget.state.loaded, timeout=180_000)   # the dock loads the model itself

    widget.prompt_edit.setText("   ")          # empty prompt: a message, nothing else happens
    widget.propose_btn.click()
    assert "empty prompt" in widget.status.text()
    n_layers = len(viewer.layers)
    ahead = "nuclei_00 promptseg" in viewer.layers      # made ahead of the first mask, hidden, empty

    widget.prompt_edit.setText("nucleus")
    widget.propose_btn.click()
    qtbot.waitUntil(lambda: "nuclei_00 promptseg" in viewer.layers and viewer.layers["nuclei_00 promptseg"].visible, timeout=180_000)
    layer = viewer.layers["nuclei_00 promptseg"]
    assert len(viewer.layers) == n_layers + (0 if ahead else 1)
    assert list(layer.features["class"]) == ["background", "nucleus"]
    assert layer.data.shape == (256, 256)
    assert "nucleus:" in widget.presence.text()
    qtbot.waitUntil(lambda: widget.propose_btn.isEnabled(), timeout=10_000)
    _shot(viewer, "propose.png")

    # The threshold slider re-merges cached probabilities without re-running the model.
    r = widget.state.current
    widget.threshold.setValue(95)
    assert np.array_equal(layer.data > 0, r.probs[0] >= 0.95)
    widget.threshold.setValue(5)
    assert np.array_equal(layer.data > 0, r.probs[0] >= 0.05)

    # A second proposal updates the same layer instead of piling up layers.
    widget.prompt_edit.setText("nucleus; background")
    widget.propose_btn.click()
    qtbot.waitUntil(lambda: list(viewer.layers["nuclei_00 promptseg"].features["class"]) ==
                    ["background", "nucleus", "background"] or "⚠" in widget.status.text(), timeout=120_000)
    assert len(viewer.layers) == n_layers + (0 if ahead else 1)


def test_fast_mode_box_switches_the_predictor_precision(make_napari_viewer, qtbot):
    """The "Fast mode" box next to Device: enabled where the device has a reduced precision
    (a CPU with native bfloat16, CUDA), off by default; checked, the next proposal runs on a
    reduced-precision predictor and still finds the nuclei; a device without one greys it out."""
    from promptseg.inference.predictor import fast_precisions

    viewer = make_napari_viewer()
    viewer.open_sample("napari-promptseg", "nuclei")
    _, widget = viewer.window.add_plugin_dock_widget("napari-promptseg", "PromptSeg")
    assert not widget.fast_mode.isEnabled()          # what the device offers is known once loaded
    qtbot.waitUntil(lambda: widget.state.loaded, timeout=180_000)
    widget.device_combo.setCurrentText("mps")
    assert not widget.fast_mode.isEnabled() and not widget.fast_mode.isChecked()
    widget.device_combo.setCurrentText("cpu")
    assert not widget.fast_mode.isChecked()
    qtbot.waitUntil(lambda: not widget.loader.busy, timeout=180_000)   # the reloads end before the test does
    if fast_precisions("cpu") is None:
        assert not widget.fast_mode.isEnabled()
        return
    assert widget.fast_mode.isEnabled() and "bfloat16" in widget.fast_mode.toolTip()
    widget.fast_mode.setChecked(True)
    widget.prompt_edit.setText("nucleus")
    widget.propose_btn.click()
    qtbot.waitUntil(lambda: "nuclei_00 promptseg" in viewer.layers and viewer.layers["nuclei_00 promptseg"].visible and widget.propose_btn.isEnabled(), timeout=180_000)
    info = widget.session.loaded_predictor.info
    assert (info["encoder_precision"], info["decoder_precision"]) == ("bfloat16", "bfloat16"), widget.status.text()
    gt = viewer.layers["nuclei_00 ground truth"].data > 0
    got = viewer.layers["nuclei_00 promptseg"].data > 0
    assert 2 * (got & gt).sum() / (got.sum() + gt.sum()) > 0.8
    widget.fast_mode.setChecked(False)
    assert widget.state.predictor("cpu").info["decoder_precision"] == "float32"


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
    nan = viewer.layers["nan promptseg"] if "nan promptseg" in viewer.layers else None   # made ahead, if there
    assert nan is None or (not nan.visible and not np.any(nan.data))


def test_accept_and_retrain_loop_with_cancel(make_napari_viewer, qtbot, tmp_path):
    from promptseg.model.checkpoint import save_checkpoint
    from promptseg.model.segmenter import ModelConfig, PromptSegModel
    from promptseg.project import Project

    # A project whose active model is tiny, so a CPU round takes seconds.
    with Project.create(tmp_path / "proj") as p:
        save_checkpoint(PromptSegModel(ModelConfig.tiny()), tmp_path / "tiny")
        p.register_model(tmp_path / "tiny", config={"seed": "tiny"})
    viewer = make_napari_viewer()
    viewer.open_sample("napari-promptseg", "nuclei")
    _, widget = viewer.window.add_plugin_dock_widget("napari-promptseg", "PromptSeg")
    panel = widget.project_panel
    panel.path_edit.setText(str(tmp_path / "proj"))
    panel.open_btn.click()
    assert widget.state.model_version == 1 and "model v1" in panel.info.text()

    widget.prompt_edit.setText("nucleus")
    widget.propose_btn.click()
    qtbot.waitUntil(lambda: "nuclei_00 promptseg" in viewer.layers and viewer.layers["nuclei_00 promptseg"].visible and widget.propose_btn.isEnabled(), timeout=180_000)
    layer = viewer.layers["nuclei_00 promptseg"]
    painted = layer.data.copy()
    painted[:40, :40] = 1                       # the annotator paints a corner
    painted[200:, 200:] = 0                     # and erases another
    layer.data = painted
    panel.accept_btn.click()
    assert "accepted nuclei_00" in panel.accept_msg.text()
    with Project.open(tmp_path / "proj") as p:
        rec = p.latest_label("nuclei_00")
        assert rec.kind == "corrected" and rec.prompt == "nucleus" and rec.model_version == 1
        assert rec.edited_fraction == pytest.approx(float((painted != widget.state.current.labels()).mean()))
        saved, classes = p.read_label(rec)
        assert classes == ["nucleus"] and np.array_equal(saved, painted)

    panel.steps.setValue(6)
    panel.retrain_btn.click()
    qtbot.waitUntil(lambda: panel.proc is None, timeout=300_000)
    kinds = [e["event"] for e in panel.events]
    assert "step" in kinds and kinds[-1] == "done", panel.retrain_msg.text()
    assert widget.state.model_version == 2 and "v2 is active" in panel.retrain_msg.text()
    assert panel.progress.value() == panel.progress.maximum()
    assert panel.plot.steps[-1] == 6 and len(panel.plot.loss) == len(panel.plot.steps) >= 2   # live loss curve
    t = panel.rounds_table
    assert t.rowCount() == 1 and t.item(0, 3).text() == "done" and t.item(0, 4).text() == "v2"

    panel.steps.setValue(100000)
    panel.retrain_btn.click()
    qtbot.waitUntil(lambda: any(e["event"] == "step" for e in panel.events), timeout=300_000)
    panel.cancel_btn.click()
    qtbot.waitUntil(lambda: panel.proc is None, timeout=120_000)
    assert panel.events[-1]["event"] == "cancelled" and widget.state.model_version == 2
    assert t.rowCount() == 2 and t.item(0, 3).text() == "cancelled" and t.item(0, 4).text() == ""

    # Rollback: pick v1 in the model combo; the project and the widget both switch.
    assert [panel.versions.itemData(i) for i in range(panel.versions.count())] == [1, 2]
    panel.versions.activated.emit(0)
    assert widget.state.model_version == 1
    with Project.open(tmp_path / "proj") as p:
        assert p.active_model().version == 1
    _shot(viewer, "retrain.png")
