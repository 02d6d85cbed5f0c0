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
        p.add_image(nuclei.items[0].image[64:128, 64:128], name="u0")   # not accepted: refreshed after the round
    viewer, widget = open_dock(make_napari_viewer, project)
    panel = widget.project_panel
    assert panel.rounds_table.rowCount() == 0 and panel.plot.loss == []
    panel.images.open_image("u0")
    widget.prompt_edit.setText("nucleus")
    widget.propose_btn.click()
    qtbot.waitUntil(lambda: widget._worker is None, timeout=120_000)
    assert widget.state.current.image == "u0" and widget.state.current.model_version == 1
    assert "model vs text expert disagree on" in widget.status.text()
    before = widget.state.current.probs.copy()
    panel.steps.setValue(10)
    assert panel.views.text() == "auto"          # the round picks: 1 view on this CPU
    panel.views.setValue(2)
    panel.retrain_btn.click()
    qtbot.waitUntil(lambda: panel.proc is None, timeout=300_000)
    kinds = [e["event"] for e in panel.events]
    assert kinds[-1] == "done" and "eval" in kinds, panel.retrain_msg.text()
    assert f"model v2 is active (trained: {panel.events[-1]['metrics']['route']})" in panel.retrain_msg.message
    assert panel.plot.steps == [5, 10]
    assert panel.plot.loss == pytest.approx([e["total"] for e in panel.events if e["event"] == "step"])
    val = [e["dice"] for e in panel.events if e["event"] == "eval"][0]
    assert panel.plot.dice == [(10, pytest.approx(val))]
    row = [panel.rounds_table.item(0, j).text() for j in range(panel.rounds_table.columnCount())]
    start = next(e for e in panel.events if e["event"] == "start")
    assert (start["views"], start["train_items"]) == (2, 4 * 2)
    assert row[1] == "4×2+1" and row[2] == f"{val:.3f}" and row[3] == "done" and row[4] == "v2"
    assert panel.rounds_table.item(0, 4).toolTip() == f"trained: {start['route']}"
    assert panel.round_progress.on_event(start).endswith(f"({start['route']})")
    # The untouched proposal is proposed again by the new model, in the DB and on screen.
    qtbot.waitUntil(lambda: not widget.batch.busy and widget.batch.done == ["u0"], timeout=120_000)
    with Project.open(project) as p:
        assert p.latest_label("u0", ("proposal",)).model_version == 2
        row = [r for r in p.image_status() if r["name"] == "u0"][0]
        assert row["model_version"] == 2 and 0 <= row["disagreement"] <= 1
    assert widget.state.current.model_version == 2 and not np.array_equal(widget.state.current.probs, before)
    assert np.array_equal(viewer.layers["u0 promptseg"].data, widget.state.current.labels())
    # The model combo and the table agree; the table comes back from the project alone.
    assert panel.versions.itemText(panel.versions.currentIndex()).startswith("model v2")
    panel.rounds_table.setRowCount(0)
    panel.show_summary()
    assert panel.rounds_table.rowCount() == 1
    viewer.window.show()
    widget.show_section(panel.monitor)          # the plot is made and drawn once its tab is in front
    qtbot.waitUntil(lambda: panel.plot.canvas is not None and panel.plot.canvas.isVisible(), timeout=10_000)
    shot(viewer, "retrain_plot.png")
    panel.plot.grab().save(str(tmp_path / "plot.png"))
    assert (tmp_path / "plot.png").stat().st_size > 1000
