"""Crash-safe file writes.

Every file in a project is written to a temp name in the *same* folder and then
``os.replace``-d onto its target, so a reader (or a restart after SIGKILL / power
loss) only ever sees the old complete file or the new complete file.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any, Iterator

import numpy as np

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_tiff",
    "atomic_replace_dir",
    "fsync_dir",
]


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory so a rename inside it survives power loss (no-op where unsupported)."""
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY)
    except OSError:
        return  # e.g. Windows cannot open directories; rename is still atomic there
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        fh.flush()
        os.fsync(fh.fileno())


def _publish_exclusive(tmp: Path, target: Path) -> None:
    """Move ``tmp`` to ``target`` but fail with FileExistsError if ``target`` exists."""
    try:
        os.link(tmp, target)  # atomic "create if absent", unlike os.replace
    except FileExistsError:
        raise
    except OSError:
        # Filesystem without hard links: best effort check-then-replace.
        if target.exists():
            raise FileExistsError(f"{target} already exists") from None
        os.replace(tmp, target)
        return
    tmp.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, exclusive: bool = False) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on clean exit move it onto ``path`` atomically.

    The caller writes the complete file to the yielded path.  On success the temp
    file is fsynced, renamed onto the target and the directory fsynced.  On any
    exception the temp file is removed and the exception propagates, leaving the
    previous target (if any) untouched.  With ``exclusive=True`` an existing target
    is never replaced: FileExistsError is raised instead.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Same folder so os.replace never crosses a filesystem; dot-prefix hides it.
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"atomic write to {target}: nothing was written to {tmp}")
        _fsync_file(tmp)
        if exclusive:
            _publish_exclusive(tmp, target)
        else:
            os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


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
