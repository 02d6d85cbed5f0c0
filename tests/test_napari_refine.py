"""Refine in a real viewer: points / box layers and exemplars re-run the decoder only."""
import numpy as np
import pytest

from test_napari_project import open_dock, propose, shot, tiny_project

napari = pytest.importorskip("napari")
pytestmark = pytest.mark.gui


def refine(widget, qtbot):
    rp = widget.refine_panel
    rp.refine_btn.click()
    qtbot.waitUntil(lambda: rp._worker is None, timeout=120_000)
    return rp.info.text()


def test_refine_with_points_box_and_exemplars(make_napari_viewer, qtbot, tmp_path, nuclei):
    project = tiny_project(tmp_path)
    viewer, widget = open_dock(make_napari_viewer, project)
    rp = widget.refine_panel
    rp.refine_btn.click()
    assert "propose on an image first" in rp.info.text()

    img_a, img_b = nuclei.items[0].image[:96, :96], nuclei.items[0].image[96:192, 96:192]
    viewer.add_image(img_a, name="a")
    viewer.add_image(img_b, name="b")
    widget.project_panel.images.add_layers_btn.click()
    widget.image_combo.setCurrentText("a")
    propose(widget, qtbot)
    qtbot.waitUntil(lambda: not widget.prefetcher.busy, timeout=60_000)   # it embeds "b" meanwhile
    before = widget.current.probs.copy()
    widget.session.loaded_predictor.set_image(img_a)
    cached = widget.session.loaded_predictor._current

    assert "nothing to refine with" in refine(widget, qtbot)
    rp.layers_btn.click()
    for name in ("a points +", "a points −", "a box"):
        assert name in viewer.layers
    viewer.layers["a points +"].add([[30.0, 40.0], [50.0, 20.0]])
    viewer.layers["a points −"].add([[80.0, 80.0]])
    viewer.layers["a box"].add_rectangles(np.array([[10.0, 10.0], [70.0, 60.0]]))
    msg = refine(widget, qtbot)
    assert "Refined with 3 point(s), a box" in msg and "decoder only" in msg
    assert widget.session.loaded_predictor._current is cached                 # same cached embedding, no re-encode
    # The layer is exactly what the predictor returns for these prompts (row, col order, labels).
    r = widget.session.loaded_predictor.predict(["nucleus"], threshold=0.5, points=np.array([[30, 40], [50, 20], [80, 80]]),
                                  point_labels=np.array([1, 1, 0]), box=(10, 10, 70, 60))
    assert np.allclose(widget.current.probs, r.probs, atol=1e-5)
    assert np.array_equal(viewer.layers["a promptseg"].data, r.labels)
    assert not np.allclose(before, r.probs)                      # the prompts changed the answer
    from promptseg.project import Project
    with Project.open(project) as p:                             # the refined proposal is re-scored
        row = [x for x in p.image_status() if x["name"] == "a"][0]
        assert row["disagreement"] is not None and 0 <= row["disagreement"] <= 1
    shot(viewer, "refine.png")

    # Edits are never overwritten by Refine.
    layer = viewer.layers["a promptseg"]
    edited = layer.data.copy()
    edited[:5, :5] = 1 - edited[:5, :5]
    layer.data = edited
    assert "has edits" in refine(widget, qtbot)
    assert np.array_equal(layer.data, edited)
    widget.project_panel.accept_btn.click()                      # a's label becomes an exemplar
    assert "accepted a" in widget.project_panel.accept_msg.text()

    widget.project_panel.images.open_image("b")
    propose(widget, qtbot)
    qtbot.waitUntil(lambda: not widget.prefetcher.busy, timeout=60_000)
    rp.exemplars.setChecked(True)
    msg = refine(widget, qtbot)
    assert "1 exemplar(s) of nucleus" in msg, msg
    pred = widget.session.loaded_predictor
    pred.set_image(img_a)
    vec = pred.exemplar_vector(edited == 1)
    pred.set_image(img_b)
    r = pred.predict(["nucleus"], threshold=0.5, exemplars={"nucleus": vec[None]})
    assert np.allclose(widget.current.probs, r.probs, atol=1e-5)
