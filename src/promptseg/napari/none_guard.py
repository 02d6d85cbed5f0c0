"""Keep ``None`` alive in napari's process on Python versions where it is not immortal.

napari with PySide6 drops references to ``None`` that it never took (a reference-count bug in
a C extension): every viewer made and closed, and more while one is in use, lowers ``None``'s
count. When it reaches zero the interpreter aborts ("none_dealloc: deallocating None"), which
would end an annotation session without saving. Python 3.12 made ``None`` immortal; on older
versions the same is done here by raising its count far above anything a session can drop.
"""
from __future__ import annotations

import ctypes
import sys

MARGIN = 1 << 40     # references added once; far more than any process can drop


def keep_none_alive() -> None:
    """Raise ``None``'s reference count by MARGIN, once per process (no-op on Python ≥ 3.12)."""
    if sys.version_info >= (3, 12) or sys.getrefcount(None) > MARGIN:
        return
    ctypes.c_ssize_t.from_address(id(None)).value += MARGIN
