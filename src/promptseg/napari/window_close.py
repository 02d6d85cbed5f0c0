"""What the dock does as napari's main window closes or its proposal layer is removed: unsaved
edits kept as a draft, background work ended first."""
from __future__ import annotations

import sys
import weakref
from typing import Callable

from qtpy.QtCore import QEvent, QObject, QThreadPool

CLOSE_WAIT_MS = 60_000   # at most this long for background work when the window closes


class CloseWatch(QObject):
    def __init__(self, on_close: Callable[[], None]) -> None:
        super().__init__()
        self.on_close = on_close
        self._window = None          # a weak reference: napari owns its window

    def watch(self, window) -> None:
        """Follow ``window``'s Close event (again is harmless; a new window replaces the old)."""
        old = self._window() if self._window is not None else None
        if window is old:
            return
        if old is not None:
            old.removeEventFilter(self)
        window.installEventFilter(self)
        self._window = weakref.ref(window)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt name)
        if event.type() == QEvent.Close:
            self.on_close()
        return False


class DockClosing:
    """Keeps the current proposal's edits as a draft when its layer is removed or the window
    closes, and ends the given background work (anything with ``stop()``) with the window."""

    def __init__(self, state, images, background: list) -> None:
        self.state, self.images, self.background = state, images, background
        self.watch = CloseWatch(self.on_window_close)

    def stash(self) -> None:
        try:
            note = self.images.stash_edits()
            if note and self.state.session.project is None:
                print(f"promptseg: {note}", file=sys.stderr)   # the dock may be closing: say it here too
        except Exception as exc:  # never block closing; say what happened
            print(f"promptseg: could not save a draft: {exc}", file=sys.stderr)

    def on_layer_removing(self, event) -> None:
        current = self.state.current
        if current is not None and self.state.viewer.layers[event.index].name == current.layer:
            self.stash()

    def on_window_close(self) -> None:
        self.stash()
        for work in self.background:
            work.stop()
        # the loading and embedding workers cannot be interrupted: let them end with the window
        QThreadPool.globalInstance().waitForDone(CLOSE_WAIT_MS)
