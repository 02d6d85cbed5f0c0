"""The Qt side of the event-loop benchmark (bench/event_loop.py): napari with the dock, a
short-period QTimer on the GUI thread, and the dock's Retrain and Cancel buttons."""
from __future__ import annotations

import time
from pathlib import Path

import napari
from qtpy.QtCore import QEventLoop, Qt, QTimer

TICK_MS = 10


def measure(project: Path, idle_s: float, train_s: float, steps: int) -> dict:
    """Open napari with the dock on ``project``, time the timer idle, then while the dock's
    Retrain runs (cancelled after ``train_s``). Returns the lateness samples (s) per phase,
    when they were taken, and the round's events as the dock saw them."""
    viewer = napari.Viewer()
    viewer.window.resize(1300, 900)
    viewer.open_sample("napari-promptseg", "nuclei")
    _, widget = viewer.window.add_plugin_dock_widget("napari-promptseg", "PromptSeg")
    panel = widget.project_panel
    panel.path_edit.setText(str(project))
    panel.open_btn.click()

    samples: dict[str, list[float]] = {"idle": [], "training": []}
    at: dict[str, list[float]] = {"idle": [], "training": []}       # seconds into the phase
    state = {"phase": None, "last": None, "t0": 0.0}

    def tick() -> None:
        now = time.perf_counter()
        if state["phase"] and state["last"] is not None:
            samples[state["phase"]].append(max(0.0, now - state["last"] - TICK_MS / 1000))
            at[state["phase"]].append(now - state["t0"])
        state["last"] = now

    timer = QTimer()
    timer.setTimerType(Qt.PreciseTimer)
    timer.setInterval(TICK_MS)
    timer.timeout.connect(tick)
    timer.start()

    def wait(seconds: float, until=lambda: False) -> None:
        loop = QEventLoop()
        t_end = time.perf_counter() + seconds
        poll = QTimer()
        poll.timeout.connect(lambda: loop.quit() if until() or time.perf_counter() > t_end else None)
        poll.start(50)
        loop.exec()
        poll.stop()

    wait(2.0)                                  # let the window settle (first paints)
    state.update(phase="idle", last=None, t0=time.perf_counter())
    wait(idle_s)
    panel.steps.setValue(steps)
    t0 = time.perf_counter()
    state.update(phase="training", last=None, t0=t0)
    panel.retrain_btn.click()
    wait(train_s, until=lambda: panel.proc is None)
    cancelled = panel.proc is not None
    if cancelled:
        panel.cancel_btn.click()
    state["phase"] = None
    wait(120, until=lambda: panel.proc is None)
    train_wall = time.perf_counter() - t0
    timer.stop()
    result = {"samples": samples, "at": at, "events": list(panel.events), "cancelled": cancelled,
              "train_wall": train_wall, "plot_points": len(panel.plot.loss)}
    viewer.close()
    return result
