"""The Qt side of the event-loop benchmark (bench/event_loop.py): napari with the dock, a
short-period QTimer on the GUI thread, and the dock's Propose, Retrain and Cancel buttons."""
from __future__ import annotations

import time
from pathlib import Path

import napari
from qtpy.QtCore import QEventLoop, Qt, QTimer

TICK_MS = 10


class _Ticks:
    """A QTimer on the GUI thread that records, per phase, how late each tick fired (s) and
    when (s into the phase)."""

    def __init__(self, phases: tuple[str, ...], tracer=None) -> None:
        self.tracer = tracer         # a gap_trace.GapTracer, told of each tick
        self.samples: dict[str, list[float]] = {p: [] for p in phases}
        self.at: dict[str, list[float]] = {p: [] for p in phases}
        self.phase: str | None = None
        self.last: float | None = None
        self.t0 = 0.0
        self.timer = QTimer()
        self.timer.setTimerType(Qt.PreciseTimer)
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def start(self, phase: str | None) -> float:
        self.phase, self.last, self.t0 = phase, None, time.perf_counter()
        return self.t0

    def _tick(self) -> None:
        now = time.perf_counter()
        if self.tracer is not None:
            self.tracer.beat()
        if self.phase and self.last is not None:
            self.samples[self.phase].append(max(0.0, now - self.last - TICK_MS / 1000))
            self.at[self.phase].append(now - self.t0)
        self.last = now


def wait(seconds: float, until=lambda: False) -> None:
    """Run the event loop for ``seconds`` or until ``until()``."""
    loop = QEventLoop()
    t_end = time.perf_counter() + seconds
    poll = QTimer()
    poll.timeout.connect(lambda: loop.quit() if until() or time.perf_counter() > t_end else None)
    poll.start(20)
    loop.exec()
    poll.stop()


def measure_first_use(propose_after_s: float, preload: bool, baseline_s: float = 10.0,
                      trace_gaps: bool = False) -> dict:
    """Open napari at 1600×1000 with the nuclei sample, time the timer from opening the dock to
    the first mask: the dock opens, ``propose_after_s`` later "nucleus" is proposed. The dock's
    opening (a call on the GUI thread, imports included) is timed on its own; before it, the
    timer runs ``baseline_s`` on the viewer without the dock. ``preload``: the
    model's modules are imported before the window exists, as ``promptseg gui`` does.
    ``trace_gaps``: the GUI thread's stack is sampled during each long gap (gap_trace.py)."""
    if preload:
        from .launch import preload_model_modules

        preload_model_modules()
    viewer = napari.Viewer()
    viewer.window._qt_window.resize(1600, 1000)
    viewer.open_sample("napari-promptseg", "nuclei")
    tracer = None
    if trace_gaps:
        from .gap_trace import GapTracer

        tracer = GapTracer()
    ticks = _Ticks(("viewer_only", "first_use"), tracer)
    wait(2.0)                                  # let the window settle (first paints)
    ticks.start("viewer_only")                 # the baseline: the same viewer without the dock
    wait(baseline_s)
    t_open, cpu_open = time.perf_counter(), time.thread_time()
    _, widget = viewer.window.add_plugin_dock_widget("napari-promptseg", "PromptSeg")
    dock_open, dock_open_cpu = time.perf_counter() - t_open, time.thread_time() - cpu_open
    ticks.start("first_use")
    marks: dict[str, float] = {}

    def mark(name: str) -> None:
        marks.setdefault(name, round(time.perf_counter() - t_open, 3))

    widget.state.model_ready.connect(lambda: mark("model_loaded_s"))
    wait(propose_after_s, until=lambda: False)
    widget.prompt_edit.setText("nucleus")
    t_click = time.perf_counter()
    mark("propose_clicked_s")
    embedded_before = bool(widget.embedder.embedded)
    widget.propose_btn.click()
    shown = lambda: widget.state.current is not None   # noqa: E731  (the layer may exist, empty, before)
    wait(600, until=shown)
    first_mask = time.perf_counter() - t_click
    mark("first_mask_s")
    wait(0.5)
    ticks.start(None)
    ticks.timer.stop()
    gaps = tracer.stop() if tracer is not None else []
    for gap in gaps:                  # seconds after the dock's opening, as the ticks' times
        gap["at_s"] = round(gap.pop("at_abs") - t_open, 3)
    result = {"gaps": gaps, "samples": ticks.samples, "at": ticks.at, "dock_open_s": dock_open, "dock_open_cpu_s": dock_open_cpu, "first_mask_s": first_mask,
              "marks": marks, "embedded_before_click": embedded_before,
              "mask_found": shown() and viewer.layers["nuclei_00 promptseg"].visible, "status": widget.status.text()}
    viewer.close()
    return result


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
    ticks = _Ticks(("idle", "training"))
    wait(2.0)                                  # let the window settle (first paints)
    ticks.start("idle")
    wait(idle_s)
    panel.steps.setValue(steps)
    t0 = ticks.start("training")
    panel.retrain_btn.click()
    wait(train_s, until=lambda: panel.proc is None)
    cancelled = panel.proc is not None
    if cancelled:
        panel.cancel_btn.click()
    ticks.start(None)
    wait(120, until=lambda: panel.proc is None)
    train_wall = time.perf_counter() - t0
    ticks.timer.stop()
    result = {"samples": ticks.samples, "at": ticks.at, "events": list(panel.events), "cancelled": cancelled,
              "train_wall": train_wall, "plot_points": len(panel.plot.loss)}
    viewer.close()
    return result
