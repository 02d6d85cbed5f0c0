"""3-D in a real napari viewer: propose on all slices, propagate from corrected slices, Accept a volume."""
import numpy as np
import pytest

from test_napari_project import open_dock, propose, shot, tiny_project

napari = pytest.importorskip("napari")
pytestmark = pytest.mark.gui


def wait_volume(widget, qtbot):
    qtbot.waitUntil(lambda: not widget.volume_panel.busy, timeout=180_000)
    assert "⚠" not in widget.volume_panel.note.text(), widget.volume_panel.note.text()


def test_all_slices_propagate_and_accept_a_volume(make_napari_viewer, qtbot, tmp_path):
    from promptseg.training.dataset import labelled_items
    from promptseg.inference.embeddings import EmbeddingCache
    from promptseg.model.checkpoint import load_checkpoint
    from promptseg.project import Project

    project = tiny_project(tmp_path)
    viewer, widget = open_dock(make_napari_viewer, project)
    panel = widget.volume_panel
    vol = np.random.default_rng(1).integers(0, 3000, (5, 48, 40)).astype(np.uint16)
    viewer.add_image(vol, name="vol", scale=(2.5, 0.8, 0.8))
    widget.image_combo.setCurrentText("vol")

    panel.propagate_btn.click()                     # nothing drawn yet: a message, nothing changes
    assert "draw or correct at least one slice" in panel.note.text()
    assert "vol promptseg" not in viewer.layers

    # A proposal on the slice on screen, corrected, then propagated through the volume.
    viewer.dims.set_current_step(0, 1)
    propose(widget, qtbot)
    layer = viewer.layers["vol promptseg"]
    assert layer.ndim == 2 and widget.state.current.slice_index == 1
    seed = np.zeros((48, 40), np.int32)
    seed[10:30, 5:25] = 1
    layer.data = seed
    assert panel.mode.currentData() == "flow"       # along the optical flow, no model, by default
    panel.propagate_btn.click()
    wait_volume(widget, qtbot)
    layer = viewer.layers["vol promptseg"]
    assert layer.data.shape == vol.shape and np.array_equal(layer.data[1], seed)
    assert tuple(layer.scale) == pytest.approx((2.5, 0.8, 0.8))
    assert "Propagated nucleus on 4 slice(s)" in panel.note.text()
    kept = panel._flows[1]                           # the flows are kept for the next Propagate
    assert sorted(kept) == [(1, 0), (1, 2), (2, 3), (3, 4)]

    # All slices along axis 0: a 3-D proposal with class names; the threshold re-merges it live.
    layer.data = widget.state.current.labels()             # undo nothing: propose again needs no edits pending
    panel.all_btn.click()
    wait_volume(widget, qtbot)
    layer = viewer.layers["vol promptseg"]
    assert layer.data.shape == vol.shape and list(layer.features["class"]) == ["background", "nucleus"]
    assert widget.state.current.probs.shape == (1, *vol.shape)
    widget.threshold.setValue(95)
    assert np.array_equal(layer.data, widget.state.current.labels(0.95))

    # Correct slice 3, propagate from it, accept: the volume and its label land in the project.
    edited = layer.data.copy()
    edited[3] = 0
    edited[3, 5:15, 5:15] = 1
    layer.data = edited
    panel.mode.setCurrentIndex(panel.mode.findData("flow+model"))
    panel.propagate_btn.click()
    wait_volume(widget, qtbot)
    final = np.asarray(viewer.layers["vol promptseg"].data)
    assert np.array_equal(final[3], edited[3])
    assert panel._flows[1] is kept and (1, 0) in kept   # same volume: its flows were reused
    shot(viewer, "volume.png")
    widget.project_panel.accept_btn.click()
    assert "accepted vol" in widget.project_panel.accept_msg.text()
    with Project.open(project) as p:
        rec = p.image("vol")
        assert rec.spatial_shape == vol.shape and tuple(rec.spacing) == pytest.approx((2.5, 0.8, 0.8))
        saved, classes = p.read_label(p.latest_label("vol"))
        assert np.array_equal(saved, final) and classes == ["nucleus"]
        # A round trains on the volume's labelled slices, one 2-D item each.
        model, _, _ = load_checkpoint(tmp_path / "tiny")
        items, _ = labelled_items(p, EmbeddingCache(tmp_path / "emb", model))
        labelled = [z for z in range(5) if final[z].any()]
        assert [it.name for it in items] == [f"vol[{z}]" for z in labelled] and labelled


def test_volume_actions_refuse_2d_and_rgb_images(make_napari_viewer, qtbot, tmp_path):
    viewer, widget = open_dock(make_napari_viewer, tiny_project(tmp_path))
    viewer.add_image(np.zeros((32, 32, 3), np.uint8), name="rgb", rgb=True)
    widget.image_combo.setCurrentText("rgb")
    widget.prompt_edit.setText("nucleus")
    widget.volume_panel.all_btn.click()
    assert "not a 3-D volume" in widget.volume_panel.note.text() and not widget.volume_panel.busy
