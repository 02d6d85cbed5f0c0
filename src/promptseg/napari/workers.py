"""Starting napari thread workers the same way everywhere: connect the callbacks, then start.

Each job runs below the GUI thread's scheduling priority. On a machine with few cores the model's
threads (and the thread pool torch starts from them, which inherits their priority) would
otherwise take the CPU napari needs to lay out, draw and answer the user; lowered, they still
get every cycle the GUI thread leaves idle.
"""
from __future__ import annotations

import inspect
import os
import sys
import threading
from abc import ABC, abstractmethod
from typing import Any, Callable

from napari.qt.threading import create_worker

BACKGROUND_NICE = 10   # thread workers and the training round's child process (project_panel.py)


def lower_thread_priority(nice: int = BACKGROUND_NICE) -> None:
    """Raise the calling thread's nice value to at least ``nice`` (Linux keeps one per thread;
    elsewhere nothing changes, as the call would lower the whole process). Never lowered back:
    that needs a privilege a user lacks, and the pool's threads only run background work."""
    if not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        if os.getpriority(os.PRIO_PROCESS, tid) < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError:
        pass


def _in_background(job: Callable[[], Any]) -> Callable[[], Any]:
    """The job, run at background priority; a generator job stays a generator (superqt tells
    the two apart by what the callable is)."""
    if inspect.isgeneratorfunction(job):
        def gen_job():
            lower_thread_priority()
            return (yield from job())
        return gen_job

    def plain_job():
        lower_thread_priority()
        return job()
    return plain_job


def start_worker(job: Callable[[], Any], on_finished: Callable[[], None], *,
                 on_item: Callable[[Any], None] | None = None,
                 on_return: Callable[[Any], None] | None = None) -> Any:
    """Run `job` off the GUI thread at background priority: a generator's items go to
    `on_item`, a function's result to `on_return`, and `on_finished` runs last in either case.
    Returns the started worker."""
    worker = create_worker(_in_background(job))
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
