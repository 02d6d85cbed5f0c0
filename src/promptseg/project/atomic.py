"""Crash-safe file writes.

Every file in a project is written to a temp name in the *same* folder and then
``os.replace``-d onto its target, so a reader (or a restart after SIGKILL / power
loss) only ever sees the old complete file or the new complete file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..fsutil import _fsync_file, atomic_path, fsync_dir

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_tiff",
    "atomic_replace_dir",
    "fsync_dir",
]


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Atomically write ``data`` to ``path``; returns the target path."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return Path(path)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Atomically write ``obj`` as pretty, key-sorted JSON (stable diffs between versions)."""
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_tiff(
    path: str | os.PathLike[str], array: np.ndarray, *, exclusive: bool = False
) -> Path:
    """Atomically write ``array`` as a zlib-compressed TIFF (see ``atomic_path`` for ``exclusive``)."""
    import tifffile  # local import keeps `import promptseg.project.atomic` cheap

    arr = np.ascontiguousarray(array)
    # Explicit photometric: otherwise tifffile guesses RGB for volumes with 3-4 slices.
    rgb = arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.dtype == np.uint8
    with atomic_path(path, exclusive=exclusive) as tmp:
        tifffile.imwrite(tmp, arr, compression="zlib", photometric="rgb" if rgb else "minisblack")
    return Path(path)


def atomic_replace_dir(tmp_dir: str | os.PathLike[str], final_dir: str | os.PathLike[str]) -> Path:
    """Rename a fully written ``tmp_dir`` to ``final_dir``.

    Refuses to replace an existing ``final_dir``: directories are versioned and
    must never be overwritten.  Both should live on the same filesystem.
    """
    src, dst = Path(tmp_dir), Path(final_dir)
    if not src.is_dir():
        raise FileNotFoundError(f"cannot move {src} into place: it is not a directory")
    if dst.exists():
        raise FileExistsError(f"refusing to replace existing directory {dst}")
    for child in src.rglob("*"):
        if child.is_file():
            _fsync_file(child)
    # os.rename (not replace) fails on POSIX if dst appeared meanwhile as a non-empty dir.
    os.rename(src, dst)
    fsync_dir(dst.parent)
    return dst
