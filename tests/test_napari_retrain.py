"""Retrain monitoring in a real viewer: a real `promptseg train` child process with held-out
labels, so the live plot gets both loss (step events) and validation Dice (eval events)."""
import numpy as np
import pytest

from test_napari_project import open_dock, shot, tiny_project

napari = pytest.importorskip("napari")
pytestmark = pytest.mark.gui


def test_retrain_plot_shows_loss_and_val_dice_and_rounds_table(make_napari_viewer, qtbot, tmp_path, nuclei):
    from promptseg.project import Project

    project = tiny_project(tmp_path)
    with Project.open(project) as p:             # 5 gold labels -> the round holds one out for Dice
        for i in range(5):
            item = nuclei.items[i % len(nuclei.items)]
            y = 64 * (i // len(nuclei.items))
            p.add_image(item.image[y:y + 64, :64], name=f"n{i}")
            p.save_label(f"n{i}", (item.mask[y:y + 64, :64] > 0).astype(np.uint8), ["nucleus"], "gold")
    viewer, widget = open_dock(make_napari_viewer, project)
    panel = widget.project_panel
    assert panel.rounds_table.rowCount() == 0 and panel.plot.loss == []
    panel.steps.setValue(10)
    panel.retrain_btn.click()
    qtbot.waitUntil(lambda: panel.proc is None, timeout=300_000)
    kinds = [e["event"] for e in panel.events]
    assert kinds[-1] == "done" and "eval" in kinds, panel.info.text()
    assert panel.plot.steps == [5, 10]
    assert panel.plot.loss == pytest.approx([e["total"] for e in panel.events if e["event"] == "step"])
    val = [e["dice"] for e in panel.events if e["event"] == "eval"][0]
    assert panel.plot.dice == [(10, pytest.approx(val))]
    row = [panel.rounds_table.item(0, j).text() for j in range(panel.rounds_table.columnCount())]
    assert row[1] == "4+1" and row[2] == f"{val:.3f}" and row[3] == "done" and row[4] == "v2"
    # The model combo and the table agree; the table comes back from the project alone.
    assert panel.versions.itemText(panel.versions.currentIndex()).startswith("v2")
    panel.rounds_table.setRowCount(0)
    panel.show_summary()
    assert panel.rounds_table.rowCount() == 1
    shot(viewer, "retrain_plot.png")
    panel.plot.grab().save(str(tmp_path / "plot.png"))
    assert (tmp_path / "plot.png").stat().st_size > 1000
