"""Project image list in a real napari viewer: add images, status, uncertainty, Next, drafts."""
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

napari = pytest.importorskip("napari")
pytestmark = pytest.mark.gui


def shot(viewer, name):
    folder = os.environ.get("PROMPTSEG_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        viewer.screenshot(str(Path(folder) / name), canvas_only=False)


def tiny_project(root: Path) -> Path:
    from promptseg.model.checkpoint import save_checkpoint
    from promptseg.model.segmenter import ModelConfig, PromptSegModel
    from promptseg.project import Project

    with Project.create(root / "proj") as p:
        save_checkpoint(PromptSegModel(ModelConfig.tiny()), root / "tiny")
        p.register_model(root / "tiny", config={"seed": "tiny"})
    return root / "proj"


def open_dock(make_napari_viewer, project: Path):
    viewer = make_napari_viewer()
    viewer.window.resize(1300, 950)
    _, widget = viewer.window.add_plugin_dock_widget("napari-promptseg", "PromptSeg")
    widget.project_panel.path_edit.setText(str(project))
    widget.project_panel.open_btn.click()
    return viewer, widget


def propose(widget, qtbot, text="nucleus"):
    widget.prompt_edit.setText(text)
    widget.propose_btn.click()
    qtbot.waitUntil(lambda: widget._worker is None and widget.propose_btn.isEnabled(), timeout=180_000)
    assert "⚠" not in widget.status.text(), widget.status.text()


def table(widget):
    t = widget.project_panel.images.table
    return {t.item(i, 0).text(): (t.item(i, 1).text(), t.item(i, 2).text()) for i in range(t.rowCount())}


def test_suggest_next_prefers_unscored_then_most_uncertain():
    from promptseg.workflow.scoring import mean_entropy, suggest_next

    rows = [{"name": "a", "status": "gold", "uncertainty": None, "model_version": None},
            {"name": "b", "status": "proposed", "uncertainty": 0.2, "model_version": 1},
            {"name": "c", "status": "unlabelled", "uncertainty": None, "model_version": None},
            {"name": "d", "status": "proposed", "uncertainty": 0.7, "model_version": 1}]
    row, why = suggest_next(rows)
    assert row["name"] == "c" and "not yet scored" in why
    row, why = suggest_next(rows, exclude="c")
    assert row["name"] == "d" and "0.700" in why
    assert suggest_next(rows[:1])[0] is None
    # Among scored images, disagreement between the model and its text expert adds to uncertainty.
    scored = [dict(rows[1], disagreement=0.6), dict(rows[3], disagreement=0.0)]
    row, why = suggest_next(scored)
    assert row["name"] == "b" and "disagree on 60%" in why
    assert mean_entropy(np.full((2, 4, 4), 0.5)) == pytest.approx(1.0)
    assert mean_entropy(np.zeros((1, 4, 4))) < 1e-3


def test_expert_disagreement_is_one_minus_dice_of_model_and_text_masks():
    from promptseg.workflow.scoring import expert_disagreement

    probs = np.zeros((2, 4, 4))
    probs[0, :2] = 0.9                     # class 0: model marks the top half
    text = np.zeros((2, 4, 4))
    text[0, :2, :2] = 0.8                  # the text expert marks half of that
    assert expert_disagreement(probs, text) == pytest.approx(1 - 2 * 4 / (8 + 4))   # class 1: both empty
    assert expert_disagreement(probs, probs) == 0.0
    assert expert_disagreement(probs, None) is None
    # The exemplar expert agrees with the model: the mean over both experts halves the score.
    assert expert_disagreement(probs, text, exemplar=probs) == pytest.approx((1 - 2 * 4 / 12 + 0.0) / 2)


def test_image_list_next_propose_drafts_and_accept(make_napari_viewer, qtbot, tmp_path):
    from promptseg.project import Project

    project = tiny_project(tmp_path)
    folder = tmp_path / "incoming"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("img_a", "img_b"):
        tifffile.imwrite(folder / f"{name}.tif", rng.integers(0, 4000, (96, 80), dtype=np.uint16))
    (folder / "broken.tif").write_bytes(b"II*\x00 this is not a tiff")
    viewer, widget = open_dock(make_napari_viewer, project)
    images = widget.project_panel.images

    images.add_folder(str(folder))                 # the corrupt file is reported, the rest added
    assert "Added 2 image(s)" in images.reason.text() and "broken.tif" in images.reason.text()
    viewer.add_image(rng.random((64, 64)).astype(np.float32), name="layer_c")
    viewer.add_image(np.zeros((2, 2, 8, 8)), name="four_d")
    images.add_layers_btn.click()
    assert "Added 1 layer" in images.reason.text() and "four_d" in images.reason.text()
    assert table(widget) == {"img_a": ("unlabelled", ""), "img_b": ("unlabelled", ""),
                             "layer_c": ("unlabelled", "")}

    images.next_btn.click()                         # nothing scored yet: the first image
    assert widget.image_combo.currentText() == "img_a" and "not yet scored" in images.reason.text()
    propose(widget, qtbot)
    status, unc = table(widget)["img_a"]
    assert status == "proposed" and float(unc) >= 0
    layer = viewer.layers["img_a promptseg"]
    edited = layer.data.copy()
    edited[:10, :10] = 1
    edited[50:, 50:] = 0
    layer.data = edited
    assert widget.state.unsaved_edits() is not None

    images.next_btn.click()                         # leaves img_a: its edits become a draft
    assert widget.image_combo.currentText() == "img_b"
    assert "draft of img_a saved" in images.reason.text()
    assert "img_a" not in viewer.layers and "img_a promptseg" not in viewer.layers
    assert (project / "drafts" / "img_a.npz").is_file()
    propose(widget, qtbot)
    shot(viewer, "image_list.png")

    row = [i for i in range(images.table.rowCount()) if images.table.item(i, 0).text() == "img_a"][0]
    images.table.cellDoubleClicked.emit(row, 0)    # back to img_a: the draft comes back
    assert "Restored your unsaved draft" in images.reason.text()
    assert np.array_equal(viewer.layers["img_a promptseg"].data, edited)
    widget.project_panel.accept_btn.click()
    assert "accepted img_a" in widget.project_panel.accept_msg.text()
    assert not (project / "drafts" / "img_a.npz").exists()
    assert table(widget)["img_a"][0] == "corrected"
    with Project.open(project) as p:
        rec = p.latest_label("img_a")
        saved, _ = p.read_label(rec)
        assert np.array_equal(saved, edited) and rec.edited_fraction > 0
        assert [lab.kind for lab in p.labels("img_a")] == ["proposal", "corrected"]  # proposal stored once
        scores = {r["name"]: r["uncertainty"] for r in p.image_status()}
    # Now every not-accepted image but layer_c is scored: Next goes to the unscored one, then
    # (layer_c scored) to the most uncertain one.
    images.next_btn.click()
    assert widget.image_combo.currentText() == "layer_c"
    propose(widget, qtbot)
    images.next_btn.click()
    with Project.open(project) as p:
        scores = {r["name"]: r["uncertainty"] for r in p.image_status()}
    assert widget.image_combo.currentText() == "img_b"     # the only other not-accepted image
    assert "highest priority" in images.reason.text() and f"{scores['img_b']:.3f}" in images.reason.text()

    # Closing napari with un-accepted edits saves a draft too.
    layer = viewer.layers["img_b promptseg"]
    edited_b = layer.data.copy()
    edited_b[5:20, 5:20] = 1
    layer.data = edited_b
    viewer.close()
    assert (project / "drafts" / "img_b.npz").is_file()


def test_closing_the_window_saves_a_draft(make_napari_viewer, qtbot, tmp_path):
    project = tiny_project(tmp_path)
    viewer, widget = open_dock(make_napari_viewer, project)
    viewer.add_image(np.random.default_rng(1).random((48, 48)).astype(np.float32), name="im")
    widget.project_panel.images.add_layers_btn.click()
    propose(widget, qtbot)
    layer = viewer.layers["im promptseg"]
    layer.data = np.where(np.arange(48)[:, None] < 20, 1, 0).astype(layer.data.dtype)
    widget.window().close()                         # the main window's close button, layers still there
    assert (project / "drafts" / "im.npz").is_file()
    with np.load(project / "drafts" / "im.npz") as z:
        assert np.array_equal(z["edited"], layer.data)


def test_propose_again_never_overwrites_edits(make_napari_viewer, qtbot, tmp_path):
    project = tiny_project(tmp_path)
    viewer, widget = open_dock(make_napari_viewer, project)
    viewer.add_image(np.random.default_rng(5).random((40, 40)).astype(np.float32), name="im")
    widget.project_panel.images.add_layers_btn.click()
    propose(widget, qtbot)
    layer = viewer.layers["im promptseg"]
    edited = np.zeros_like(layer.data)
    edited[10:20, 10:20] = 1
    layer.data = edited
    widget.propose_btn.click()
    assert "has edits" in widget.status.text() and widget._worker is None
    assert np.array_equal(layer.data, edited)
    viewer.layers.remove(layer)                     # deleting the layer keeps the edits as a draft
    assert (project / "drafts" / "im.npz").is_file()
    propose(widget, qtbot)                          # and a fresh proposal is allowed
    assert "im promptseg" in viewer.layers


def test_edits_without_a_project_are_kept_as_a_label_file(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTSEG_DRAFTS", str(tmp_path / "unsaved"))
    tiny_project(tmp_path)                           # only for its tiny checkpoint
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-promptseg", "PromptSeg")
    widget.checkpoint = str(tmp_path / "tiny")
    viewer.add_image(np.random.default_rng(2).random((48, 56)).astype(np.float32), name="scan/1")
    propose(widget, qtbot)
    layer = viewer.layers["scan/1 promptseg"]
    edited = layer.data.copy()
    edited[5:25, 5:25] = 1
    layer.data = edited
    viewer.layers.remove(layer)                      # no project: the edits go to a label TIFF
    files = sorted((tmp_path / "unsaved").glob("*.tif"))
    assert len(files) == 1 and files[0].name.startswith("scan_1-")
    assert np.array_equal(tifffile.imread(files[0]), edited)
    assert str(files[0]) in widget.status.text()
    viewer.close()                                   # nothing new to keep: no second file
    assert len(list((tmp_path / "unsaved").glob("*.tif"))) == 1
