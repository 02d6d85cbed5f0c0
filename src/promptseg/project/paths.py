"""Every path a project derives stays inside the project folder.

Names and relative paths come from the database, which a copied or hand-edited project can
fill with anything; each is checked before a file is read or written: a plain name without
separators, a relative path without ``..``, and a resolved location (symlinks followed) still
under the resolved project root.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from pathlib import Path, PurePosixPath

from .errors import ProjectError

__all__ = ["check_name", "inside", "checked_path", "SpaceError", "check_space", "space_error"]


def check_name(name: object, what: str = "image") -> str:
    """``name`` stripped; ProjectError unless it is a plain, non-empty name without separators,
    control characters or a leading dot (so it can never address another folder)."""
    text = str(name).strip()
    if (not text or text.startswith(".") or "/" in text or "\\" in text or os.sep in text
            or any(ord(ch) < 32 for ch in text)):
        raise ProjectError(f"invalid {what} name {text!r}: must be non-empty, must not start with '.', "
                           "and must hold no path separators or control characters")
    return text


def inside(root: Path, target: Path) -> bool:
    """True if ``target`` (symlinks resolved) lies under ``root`` (symlinks resolved)."""
    try:
        target.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def checked_path(root: Path, rel: str, row: str) -> Path:
    """``root / rel`` after refusing absolute paths, ``..`` and symlinks that lead outside ``root``;
    ``row`` names the database row in the message (e.g. "images row 3")."""
    pure = PurePosixPath(str(rel).replace("\\", "/"))
    if not str(rel) or pure.is_absolute() or ".." in pure.parts or (os.name == "nt" and ":" in str(rel)):
        raise ProjectError(f"{row} of project {root} has the path {str(rel)!r}, which leaves the project "
                           "folder; the project was edited outside promptseg and is refused")
    path = root.joinpath(*pure.parts)
    if not inside(root, path):
        raise ProjectError(f"{row} of project {root}: {path} is a symbolic link (or lies under one) that "
                           "leads outside the project folder; refused")
    return path


class SpaceError(ProjectError):
    """The project's disk is full (a user-facing message naming how much space was needed)."""


def _message(root: Path, needed: int) -> str:
    free = shutil.disk_usage(root).free if root.exists() else 0
    return (f"no space left on the project's disk: {max(1, -(-needed // 2**20))} MB needed, "
            f"{free // 2**20} MB free at {root}")


def check_space(root: Path, needed: int) -> None:
    """Raise SpaceError before writing ``needed`` bytes under ``root`` if the disk lacks them."""
    if shutil.disk_usage(root).free < needed:
        raise SpaceError(_message(root, needed))


def space_error(exc: BaseException, root: Path, needed: int) -> SpaceError | None:
    """A SpaceError for an exception that means "disk full" (ENOSPC, EDQUOT, SQLite's FULL), else None."""
    full = (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)) or (
        isinstance(exc, sqlite3.OperationalError) and "disk is full" in str(exc))
    return SpaceError(_message(root, needed)) if full else None
