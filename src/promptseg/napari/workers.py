"""Starting napari thread workers the same way everywhere: connect the callbacks, then start."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable

from napari.qt.threading import create_worker


def start_worker(job: Callable[[], Any], on_finished: Callable[[], None], *,
                 on_item: Callable[[Any], None] | None = None,
                 on_return: Callable[[Any], None] | None = None) -> Any:
    """Run `job` off the GUI thread: a generator's items go to `on_item`, a function's result to
    `on_return`, and `on_finished` runs last in either case. Returns the started worker."""
    worker = create_worker(job)
    if on_item is not None:
        worker.yielded.connect(on_item)
    if on_return is not None:
        worker.returned.connect(on_return)
    worker.finished.connect(on_finished)
    worker.start()
    return worker


class GeneratorOwner(ABC):
    """Owns at most one generator worker: its items go to `_got`, its end to `_finished`."""

    def __init__(self) -> None:
        self._worker: Any = None

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def _launch(self, job: Callable[[], Any]) -> None:
        self._worker = start_worker(job, self._finished, on_item=self._got)

    @abstractmethod
    def _got(self, item: Any) -> None:
        """One item the worker yielded."""

    def _finished(self) -> None:
        self._worker = None
