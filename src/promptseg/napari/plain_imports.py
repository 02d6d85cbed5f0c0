"""Imports without PySide6's import hook, for the model's modules.

Once PySide6 is loaded, ``builtins.__import__`` is its hook: after each new module it reads
that module's source file to find whether it uses PySide6 (for its ``__feature__`` switches).
For torch and transformers that is thousands of source files read on top of the imports
themselves. ``plain_imports()`` imports with Python's own ``__import__`` instead and records
the new modules as PySide's hook would for modules that do not use PySide6, so it never reads
them later either. Where PySide6 has not installed its hook it changes nothing.
"""
from __future__ import annotations

import builtins
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

QT_PACKAGES = ("PySide6", "shiboken6", "PyQt5", "PyQt6", "qtpy", "superqt", "napari", "vispy", "magicgui",
               "app_model", "promptseg.napari")
_lock = threading.Lock()


def _feature_table() -> dict | None:
    """PySide6's module -> feature-switch table (None where PySide6 has no import hook)."""
    feature = sys.modules.get("PySide6.support.feature")
    hook = getattr(builtins, "__feature_import__", None)
    if feature is None or hook is None or builtins.__import__ is not hook:
        return None
    table = getattr(feature, "pyside_feature_dict", None)
    return table if isinstance(table, dict) else None


@contextmanager
def plain_imports() -> Iterator[None]:
    """Import with Python's own ``__import__`` inside the block (any thread's imports meanwhile
    too); the hook is back afterwards."""
    with _lock:
        table = _feature_table()
        original = getattr(builtins, "__orig_import__", None)
        if table is None or original is None:
            yield
            return
        hook = builtins.__import__
        before = set(sys.modules)
        builtins.__import__ = original
        try:
            yield
        finally:
            builtins.__import__ = hook
            for name in set(sys.modules) - before:
                # -1: "ignore this module", PySide's value for a module that does not use it;
                # Qt-side modules are left to the hook, which checks them on their next import
                if not name.startswith(QT_PACKAGES):
                    table.setdefault(name, -1)
