"""The state and core queries that ``Project``'s mixins share, declared once for type checkers."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from .records import ClassRecord, ImageRecord

__all__ = ["ProjectPart"]


class ProjectPart:
    """Base of the ``Project`` mixins: the folder, the SQLite connection and its lock, set by ``Project``."""

    root: Path
    _db: sqlite3.Connection
    _lock: threading.RLock

    if TYPE_CHECKING:
        def _query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]: ...
        def image(self, name_or_id: str | int | ImageRecord) -> ImageRecord: ...
        def images(self) -> list[ImageRecord]: ...
        def add_class(self, name: str, color: str | None = None,
                      synonyms: Iterable[str] = ()) -> ClassRecord: ...
