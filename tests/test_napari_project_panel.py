"""The Project, Accept and Retrain sections in a real napari viewer: a project is created only
once confirmed, a folder of images becomes a project of them, messages sit next to their
buttons and show once, Next shows the stored proposal, and a real round's progress bar moves
while it embeds and counts the right images."""
import numpy as np
import pytest
import tifffile
from qtpy.QtCore import Qt

from test_napari_project import shot, tiny_project

napari = pytest.importorskip("napari")
pytestmark = pytest.mark.gui


def dock(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.window.resize(1600, 1000)
    _, widget = viewer.window.add_plugin_dock_widget("napari-promptseg", "PromptSeg")
    return viewer, widget


def shown(w) -> bool:
    return not w.isHidden()   # the viewer's window is not shown in tests: isVisible() is always False


def test_a_mistyped_folder_creates_nothing_until_confirmed(make_napari_viewer, tmp_path):
    from promptseg.project import Project

    viewer, widget = dock(make_napari_viewer)
    panel = widget.project_panel
    typo = tmp_path / "projcets" / "nuclei"
    panel.path_edit.setText(str(typo))
    panel.open_btn.click()
    assert shown(panel.folder.confirm) and f"{typo} does not exist" in panel.folder.question.text()
    assert not typo.exists() and not typo.parent.exists() and panel.project is None
    panel.folder.cancel_btn.click()
    assert not shown(panel.folder.confirm) and not typo.parent.exists()
    assert "Nothing was created" in panel.info.text()
    panel.open_btn.click()
    panel.path_edit.setText(str(tmp_path / "other"))   # editing the path withdraws the question
    assert not shown(panel.folder.confirm)
    panel.open_btn.click()
    panel.folder.create_btn.click()
    assert panel.project is not None and (tmp_path / "other" / "project.sqlite").is_file()
    assert not typo.parent.exists() and "0 images" in panel.info.text()
    with Project.open(tmp_path / "other") as p:
        assert p.images() == []


def test_a_folder_of_images_becomes_a_project_of_them(make_napari_viewer, tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    rng = np.random.default_rng(0)
    long_name = "TCGA-A7-A13E-01Z-00-DX1_region_0042_stain_normalised"
    for name in ("a", long_name):
        tifffile.imwrite(folder / f"{name}.tif", rng.integers(0, 255, (64, 48), dtype=np.uint8))
    (folder / "broken.tif").write_bytes(b"II*\x00 not a tiff")
    viewer, widget = dock(make_napari_viewer)
    panel = widget.project_panel
    panel.path_edit.setText(str(folder))
    panel.open_btn.click()
    assert "Create a project here from these 3 images" in panel.folder.question.text()
    assert not (folder / "project.sqlite").exists()
    panel.folder.create_btn.click()
    assert panel.project is not None and sorted(r.name for r in panel.project.images()) == sorted(["a", long_name])
    assert "broken.tif" in panel.info.text() and panel.info.level == "warning"
    # The table elides long names in the middle and gives the whole name as a tooltip.
    table = panel.images.table
    assert table.textElideMode() == Qt.ElideMiddle
    names = {table.item(i, 0).text(): table.item(i, 0).toolTip() for i in range(table.rowCount())}
    assert names[long_name] == long_name
    shot(viewer, "project_from_folder.png")


def test_accept_and_retrain_warn_next_to_their_buttons_once_and_clear(make_napari_viewer, tmp_path):
    project = tiny_project(tmp_path)
    viewer, widget = dock(make_napari_viewer)
    panel = widget.project_panel
    shown = []
    panel.retrain_msg.setText = lambda text, f=panel.retrain_msg.setText: (shown.append(text), f(text))
    for _ in range(3):
        panel.retrain_btn.click()
    assert shown == ["⚠ open a project first (Project section)"]
    assert panel.retrain_msg.parent() is panel.retrain_box and panel.accept_msg.parent() is panel.accept_box
    panel.accept_btn.click()
    assert "open a project first" in panel.accept_msg.text() and panel.info.text() == "No project open."
    panel.path_edit.setText(str(project))
    panel.open_btn.click()
    assert panel.retrain_msg.text() == "" and panel.accept_msg.text() == ""   # the cause is gone
    panel.accept_btn.click()
    assert "propose on an image first" in panel.accept_msg.text()
    viewer.add_image(np.random.default_rng(1).random((48, 48)).astype(np.float32), name="im")
    panel.images.add_layers_btn.click()
    widget.prompt_edit.setText("nucleus")
    widget.propose_btn.click()
    qtbot_wait(lambda: widget._worker is None and "im promptseg" in viewer.layers and viewer.layers["im promptseg"].visible)
    assert panel.accept_msg.text() == ""
    panel.accept_btn.click()
    assert panel.accept_msg.text().startswith("accepted im as label rev 2 (")
    assert "model v1" in panel.info.text()


def qtbot_wait(cond, timeout_s: float = 180.0) -> None:
    import time

    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < end, "timed out"
        QApplication.processEvents()
        time.sleep(0.02)


def test_next_opens_the_image_with_its_stored_proposal(make_napari_viewer, tmp_path, nuclei):
    from promptseg.project import Project
    from promptseg.workflow.propose import store_proposal

    project = tiny_project(tmp_path)
    item = nuclei.items[0]
    rgb = np.repeat(item.image[:96, :96, None], 3, axis=2)       # a colour image, as H&E slides are
    stored = (item.mask[:96, :96] > 0).astype(np.int32)
    with Project.open(project) as p:
        p.add_image(rgb, name="slide", rgb=True)
        store_proposal(p, "slide", stored, ["nucleus"], 0.4, None, 1)
    viewer, widget = dock(make_napari_viewer)
    proposes = []
    widget.propose = lambda *a, f=widget.propose: (proposes.append(a), f(*a))
    panel = widget.project_panel
    panel.path_edit.setText(str(project))
    panel.open_btn.click()
    panel.images.next_btn.click()
    assert widget.image_combo.currentText() == "slide"
    layer = viewer.layers["slide promptseg"]
    assert np.array_equal(layer.data, stored) and proposes == [] and widget._worker is None
    assert "stored proposal (label rev 1, by model v1)" in panel.images.reason.text()
    assert widget.state.current.saved_proposal is not None and widget.state.current.model_version == 1


def test_a_one_step_round_moves_the_bar_while_embedding(make_napari_viewer, qtbot, tiny_round_project):
    from promptseg.project import Project

    with Project.open(tiny_round_project) as p:
        n_images = len(p.images())
    viewer, widget = dock(make_napari_viewer)
    panel = widget.project_panel
    panel.path_edit.setText(str(tiny_round_project))
    panel.open_btn.click()
    seen = []
    on_event = panel._on_event

    def record(ev):
        on_event(ev)
        seen.append((ev["event"], panel.progress.value(), panel.progress.maximum(), panel.retrain_msg.text()))
        if ev["event"] == "embed" and ev["group"] == "unlabelled" and ev["done"] == 1:
            shot(viewer, "round_progress.png")
    panel._on_event = record
    panel.steps.setValue(1)
    panel.retrain_btn.click()
    qtbot.waitUntil(lambda: panel.proc is None, timeout=600_000)
    assert seen[-1][0] == "done", panel.retrain_msg.text()
    embeds = [s for s in seen if s[0] == "embed"]
    values = [v for _, v, _, _ in embeds]
    assert values == sorted(values) and values[0] == 0 and values[-1] == n_images
    assert all(m == n_images + 1 for _, _, m, _ in embeds)        # one bar: every image, then the step
    texts = [t for *_, t in embeds]
    assert texts[0].startswith("embedding labelled images: 0/3 done")
    assert f"embedding unlabelled images: {n_images - 3}/{n_images - 3} done" in texts[-1]
    assert "left for embedding" in texts[-1]
    assert panel.progress.value() == panel.progress.maximum() == n_images + 1
    assert panel.round_progress.napari_bar is None                 # the activity dock's bar is closed
