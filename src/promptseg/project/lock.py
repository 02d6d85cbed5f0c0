"""One training round at a time per project: an OS lock (``fcntl.flock``) on ``round.lock``.

The kernel drops the lock when its process dies, so a killed round never blocks the next one,
and a round marked ``running`` whose lock nobody holds was interrupted.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator, Protocol

from .errors import ProjectError
from .paths import check_space, inside, space_error


__all__ = ["LOCK_NAME", "RoundBusy", "RoundLock", "round_lock_holder", "exclusive_round", "recover_interrupted"]

LOCK_NAME = "round.lock"

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock, rounds are not serialised there
    fcntl = None  # type: ignore[assignment]


class RoundOwner(Protocol):
    """What the round lock needs of a project (the store's Project)."""

    root: Path
    _db: sqlite3.Connection
    _lock: Any

    def _query(self, sql: str, params: Any = ()) -> list[sqlite3.Row]: ...

    def fail_running_rounds(self, message: str) -> Any: ...


class RoundBusy(ProjectError):
    """Another process holds the project's round lock."""


def _open(root: Path) -> int:
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(root / LOCK_NAME, flags, 0o644)
    except OSError as exc:
        raise ProjectError(f"cannot open the round lock {root / LOCK_NAME}: {exc.strerror}") from None


def _describe(info: dict[str, Any] | None) -> str:
    if not info:
        return "pid unknown"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info.get("started", 0))))
    return f"pid {info.get('pid', '?')}, started {started}"


def _read_info(fd: int) -> dict[str, Any] | None:
    try:
        data = os.pread(fd, 4096, 0)
        info = json.loads(data.decode("utf-8")) if data else None
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def round_lock_holder(root: Path) -> dict[str, Any] | None:
    """``{"pid", "started"}`` of the process running a round in ``root`` (as far as it wrote
    them), ``{}`` when held by an unknown writer, or None when no round is running."""
    if fcntl is None or not (root / LOCK_NAME).exists():
        return None
    fd = _open(root)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_info(fd) or {}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class RoundLock:
    """Exclusive, non-blocking: ``acquire`` raises RoundBusy naming the holder's pid and start."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._fd: int | None = None

    def acquire(self) -> RoundLock:
        if fcntl is None:
            return self
        fd = _open(self.root)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            info = _read_info(fd)
            os.close(fd)
            raise RoundBusy(f"a round is already running ({_describe(info)}) in {self.root}; "
                            "wait for it to finish or cancel it") from None
        payload = json.dumps({"pid": os.getpid(), "started": time.time()}).encode()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, payload, 0)
        except OSError:
            pass  # the lock holds without the description (e.g. a full disk)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            os.close(fd)   # closing drops the flock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RoundLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def exclusive_round(project: RoundOwner, needed_bytes: int) -> Iterator[RoundLock]:
    """Hold the project's round lock for a training round: refuse when another round runs or
    the disk lacks ``needed_bytes``; if the round raises, every round it left ``running`` is
    marked ``failed`` and a full disk becomes a SpaceError with the usual message."""
    lock = RoundLock(project.root).acquire()
    try:
        check_space(project.root, needed_bytes)
        yield lock
    except BaseException as exc:
        with contextlib.suppress(Exception):   # on a full disk the next open marks it interrupted
            project.fail_running_rounds(f"{type(exc).__name__}: {exc}")
        full = space_error(exc, project.root, needed_bytes)
        if full is not None:
            raise full from None
        raise
    finally:
        lock.release()


def recover_interrupted(project: RoundOwner) -> None:
    """Rounds marked running without a live lock holder become 'interrupted', and temporary
    model folders of killed rounds are removed; done under the lock, so no round starts meanwhile."""
    models = project.root / "models"
    orphans = list(models.glob("tmp*")) + list(models.glob(".tmp-*"))
    if not orphans and not project._query("SELECT 1 FROM rounds WHERE status='running' LIMIT 1"):
        return   # nothing to do, and no write on a plain open
    try:
        lock = RoundLock(project.root).acquire()
    except RoundBusy:
        return   # a round is running now: its rows and folders are its own
    try:
        with project._lock, project._db:
            project._db.execute("UPDATE rounds SET status='interrupted' WHERE status='running'")
        for tmp in orphans:
            if tmp.is_dir() and not tmp.is_symlink() and inside(project.root, tmp):
                shutil.rmtree(tmp, ignore_errors=True)
    except sqlite3.OperationalError as exc:
        if space_error(exc, project.root, 0) is None:
            raise   # on a full disk the rounds stay as they are until there is space
    finally:
        lock.release()
