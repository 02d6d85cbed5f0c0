"""Filesystem primitives shared by every writer: atomic file replacement and hashing, and the
one content hash of an image array (project records and embedding caches key on it).

A leaf module (no promptseg imports) so the model, io and project layers can all use it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Iterator

import numpy as np


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def array_sha256(array: np.ndarray) -> str:
    """Content hash of an array: raw bytes plus shape and dtype, so reshapes and
    reinterpretations of the same bytes differ. The one image hash: a project stores it per
    image and every embedding cache file is named by it."""
    arr = np.ascontiguousarray(np.asarray(array))
    h = hashlib.sha256()
    h.update(arr.tobytes())
    h.update(json.dumps(list(arr.shape)).encode())
    h.update(arr.dtype.str.encode())
    return h.hexdigest()


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
def atomic_path(path: str | os.PathLike[str], *, exclusive: bool = False,
                keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on clean exit move it onto ``path`` atomically.

    The caller writes the complete file to the yielded path.  On success the temp
    file is fsynced, renamed onto the target and the directory fsynced.  On any
    exception the temp file is removed and the exception propagates, leaving the
    previous target (if any) untouched.  With ``exclusive=True`` an existing target
    is never replaced: FileExistsError is raised instead. ``keep_suffix`` ends the temp
    name with the target's suffixes, for writers that pick the format from it (nibabel).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Same folder so os.replace never crosses a filesystem; dot-prefix hides it.
    suffix = "".join(target.suffixes[-2:]) if keep_suffix else ""
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}{suffix}"
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"atomic write to {target}: nothing was written to {tmp}")
        _fsync_file(tmp)
        if target.exists() and not exclusive:  # keep the replaced file's permissions
            os.chmod(tmp, target.stat().st_mode & 0o777)
        if exclusive:
            _publish_exclusive(tmp, target)
        else:
            os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


