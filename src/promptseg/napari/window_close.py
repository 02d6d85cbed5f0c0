"""Runs a callback when napari's main window closes, so the dock can keep unsaved edits as a
draft and end its background work first."""
from __future__ import annotations

import weakref
from typing import Callable

from qtpy.QtCore import QEvent, QObject


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
