"""Background work in a real viewer: prefetched embeddings, batch propose with progress and Stop."""
import numpy as np
import pytest
import tifffile

from test_napari_project import open_dock, propose, table, tiny_project

napari = pytest.importorskip("napari")
pytestmark = pytest.mark.gui


def project_with_images(tmp_path, n):
    project = tiny_project(tmp_path)
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(n):
        tifffile.imwrite(folder / f"im{i}.tif", rng.integers(0, 255, (64, 72), dtype=np.uint8))
    return project, folder


def test_next_images_are_embedded_in_the_background(make_napari_viewer, qtbot, tmp_path):
    project, folder = project_with_images(tmp_path, 3)
    viewer, widget = open_dock(make_napari_viewer, project)
    widget.project_panel.images.add_folder(str(folder))
    widget.project_panel.images.next_btn.click()
    assert widget.image_combo.currentText() == "im0"
    propose(widget, qtbot)
    qtbot.waitUntil(lambda: not widget.prefetcher.busy, timeout=120_000)
    assert widget.prefetcher.log == ["im1", "im2"]            # the order Next will take
    pred = widget.session.loaded_predictor
    cached = len(pred._cache)
    widget.project_panel.images.next_btn.click()
    assert widget.image_combo.currentText() == "im1"
    propose(widget, qtbot)
    assert widget.session.loaded_predictor is pred and len(pred._cache) == cached   # a cache hit: decoder only

    # A new model version invalidates: prefetched keys carry the model hash.
    assert all(k[0] == pred.model_hash for k in widget.prefetcher.embedded)


def test_batch_propose_with_progress_and_stop(make_napari_viewer, qtbot, tmp_path):
    from promptseg.project import Project

    project, folder = project_with_images(tmp_path, 6)
    viewer, widget = open_dock(make_napari_viewer, project)
    images = widget.project_panel.images
    images.add_folder(str(folder))
    images.batch_btn.click()
    assert "empty prompt" in images.batch_info.text() and not widget.batch.busy   # nothing started
    widget.prompt_edit.setText("nucleus")

    seen = []
    images.batch_btn.click()
    assert widget.batch.busy and images.batch_btn.text() == "Stop"
    widget.batch._worker.yielded.connect(lambda *_: seen.append(widget.batch._bar.n))
    widget.batch._worker.yielded.connect(lambda *_: images.batch_btn.click() if len(seen) == 2 else None)
    qtbot.waitUntil(lambda: not widget.batch.busy, timeout=180_000)
    qtbot.wait(200)                                          # results queued behind 'finished'
    assert seen[:2] == [1, 2]                                # the napari progress bar advanced per image
    n = widget.batch.processed
    assert 2 <= n < 6 and images.batch_info.text().startswith(f"Stopped: {n}/6")
    assert images.batch_btn.text() == "Propose all"
    with Project.open(project) as p:
        rows = p.image_status()
    assert sum(r["status"] == "proposed" and r["uncertainty"] is not None for r in rows) == n

    images.batch_btn.click()                                 # the rest (and re-propose the first n)
    qtbot.waitUntil(lambda: not widget.batch.busy, timeout=180_000)
    assert images.batch_info.text().startswith("Done: 6/6")
    assert all(s == "proposed" and u for s, u in table(widget).values())
    images.next_btn.click()                                  # now ranked by uncertainty
    assert "highest priority" in images.reason.text()
