"""The dock as a whole in a real napari window at 1600×1000 (run under Xvfb): the main loop in
view in every tab, a first use that explains itself, messages that do not stack, the model
loading off the GUI thread, tooltips everywhere, shortcuts in napari's preferences."""
import threading
import time

import numpy as np
import pytest
from qtpy.QtCore import QPoint, QRect, Qt, QTimer
from qtpy.QtWidgets import QCheckBox, QComboBox, QPushButton

napari = pytest.importorskip("napari")
pytestmark = pytest.mark.gui



def open_dock(make_napari_viewer, sample=True):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)
    if sample:
        viewer.open_sample("napari-promptseg", "nuclei")
    _, widget = viewer.window.add_plugin_dock_widget("napari-promptseg", "PromptSeg")
    return viewer, widget


def main_loop(widget):
    panel = widget.project_panel
    return {"image": widget.image_combo, "classes": widget.prompt_edit, "Propose": widget.propose_btn,
            "message": widget.status, "Accept": panel.accept_btn, "Retrain": panel.retrain_btn,
            "Cancel": panel.cancel_btn, "progress": panel.progress}


def in_view(widget, window) -> bool:
    """Shown, not clipped away by a scroll area, and inside the window."""
    if not widget.isVisible() or widget.visibleRegion().isEmpty():
        return False
    top_left = widget.mapTo(window, QPoint(0, 0))
    return window.rect().contains(QRect(top_left, widget.size()))


def test_main_loop_is_in_view_in_every_tab_at_1600x1000(make_napari_viewer, qtbot):
    viewer, widget = open_dock(make_napari_viewer)
    window = viewer.window._qt_window
    qtbot.waitUntil(lambda: window.height() <= 1000 and widget.height() > 500, timeout=10_000)
    assert not viewer.layers["nuclei_00 ground truth"].visible      # the gold does not hide the proposal
    widget.status.say("a message " * 30)                               # a long message wraps, still fits
    for i in range(widget.tabs.count()):
        widget.tabs.setCurrentIndex(i)
        qtbot.wait(50)
        hidden = [name for name, w in main_loop(widget).items() if not in_view(w, window)]
        assert not hidden, f"tab {widget.tabs.tabText(i)}: not in view {hidden}"
        page = widget.tabs.currentWidget()
        need, room = page.widget().minimumSizeHint().height(), page.viewport().height()
        assert not page.verticalScrollBar().isVisible(), f"tab {widget.tabs.tabText(i)} scrolls ({need} > {room})"
    assert [widget.tabs.tabText(i) for i in range(widget.tabs.count())] == ["Refine", "Project", "Train", "3-D"]
    widget.show_section(widget.project_panel.monitor)
    assert widget.tabs.tabText(widget.tabs.currentIndex()) == "Train"
    qtbot.waitUntil(lambda: not widget.loader.busy and not widget.embedder.busy, timeout=300_000)


def test_first_use_and_a_warning_shown_once_then_cleared(make_napari_viewer, qtbot):
    from napari.utils.notifications import notification_manager

    viewer, widget = open_dock(make_napari_viewer, sample=False)
    assert not widget.guide.isHidden() and "Open Sample" in widget.guide.text() and "optional" in widget.guide.text()
    notes = []
    notification_manager.notification_ready.connect(lambda n: notes.append(n.message))
    widget.prompt_edit.setText("nucleus")
    for _ in range(3):
        widget.propose_btn.click()
    assert widget.status.text().count("open an image first") == 1
    assert sum("open an image first" in m for m in notes) == 1             # notified once, not thrice
    viewer.open_sample("napari-promptseg", "nuclei")
    assert "open an image first" not in widget.status.text()                # its cause is gone
    assert widget.guide.isHidden()
    qtbot.waitUntil(lambda: not widget.loader.busy and not widget.embedder.busy, timeout=300_000)


def test_model_loads_in_a_worker_and_a_click_meanwhile_proposes_when_ready(make_napari_viewer, qtbot):
    viewer, widget = open_dock(make_napari_viewer)
    assert widget.loader.busy and "loading model" in widget.status.text()
    ticks = []
    timer = QTimer()
    timer.setTimerType(Qt.PreciseTimer)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()) if widget.loader.busy else None)
    timer.start(10)
    widget.prompt_edit.setText("nucleus")
    widget.propose_btn.click()                        # while loading: it waits for the model
    qtbot.waitUntil(lambda: "nuclei_00 promptseg" in viewer.layers and viewer.layers["nuclei_00 promptseg"].visible, timeout=300_000)
    timer.stop()
    assert ticks                                      # the GUI thread ran its timer while the model loaded
    assert widget.loader.thread not in (None, threading.get_ident())   # in a worker thread
    gt = viewer.layers["nuclei_00 ground truth"].data > 0
    got = viewer.layers["nuclei_00 promptseg"].data > 0
    assert 2 * (got & gt).sum() / (got.sum() + gt.sum()) > 0.8


def test_every_control_has_a_tooltip_and_shortcuts_are_napari_actions(make_napari_viewer, qtbot):
    from napari._qt.widgets.qt_keyboard_settings import ShortcutEditor
    from napari.utils.action_manager import action_manager

    from promptseg.napari.shortcuts import SHORTCUTS, action_name

    viewer, widget = open_dock(make_napari_viewer)
    missing = set()
    for kind in (QPushButton, QComboBox, QCheckBox):
        for control in widget.findChildren(kind):
            if not control.toolTip().strip():
                missing.add(control.text() if hasattr(control, "text") else control.objectName() or repr(control))
    assert not missing, f"no tooltip: {sorted(missing)}"
    assert "Shift+P" in widget.propose_btn.toolTip() and "Shift+A" in widget.project_panel.accept_btn.toolTip()
    assert "Shift+R" in widget.project_panel.retrain_btn.toolTip()
    for key, action, _, _ in SHORTCUTS:
        assert [str(k) for k in action_manager._shortcuts[action_name(action)]] == [key]
    editor = ShortcutEditor()
    listed = editor.key_bindings_strs[editor.VIEWER_KEYBINDINGS]
    assert all(action_name(a) in listed for _, a, _, _ in SHORTCUTS)
    # a shortcut changed in the preferences drives the dock: Shift+P now does nothing, Shift+O proposes
    action_manager.unbind_shortcut(action_name("propose"))
    action_manager.bind_shortcut(action_name("propose"), "Shift-O")
    try:
        widget.prompt_edit.setText("nucleus")
        canvas = viewer.window._qt_viewer.canvas.native
        qtbot.keyClick(canvas, Qt.Key_O, Qt.ShiftModifier)
        assert widget.proposing or widget.state.proposing or widget._pending or "nuclei_00 promptseg" in viewer.layers
    finally:
        action_manager.unbind_shortcut(action_name("propose"))
        action_manager.bind_shortcut(action_name("propose"), "Shift-P")
    qtbot.waitUntil(lambda: "nuclei_00 promptseg" in viewer.layers and viewer.layers["nuclei_00 promptseg"].visible and not widget.proposing, timeout=300_000)
    assert np.asarray(viewer.layers["nuclei_00 promptseg"].data).any()


def test_the_dock_draws_its_main_loop_first_then_the_tabs_then_makes_the_proposal_layer(make_napari_viewer, qtbot):
    """No single turn lays out and paints the whole dock, and the layer made ahead waits for it."""
    viewer, widget = open_dock(make_napari_viewer)
    assert widget.tabs.isHidden() and "nuclei_00 promptseg" not in viewer.layers
    qtbot.waitUntil(lambda: widget.tabs.isVisible(), timeout=10_000)
    qtbot.waitUntil(lambda: "nuclei_00 promptseg" in viewer.layers and not widget.layers_ahead.busy, timeout=60_000)
    qtbot.waitUntil(lambda: not widget.loader.busy, timeout=300_000)
