"""Imports for the model go around PySide6's import hook (which reads every new module's
source) and the hook is back afterwards, with the new modules recorded as PySide's hook would."""
import builtins
import importlib
import sys

import pytest

pytest.importorskip("PySide6.QtCore")


def test_plain_imports_bypass_pysides_hook_and_restore_it():
    from promptseg.napari.plain_imports import _feature_table, plain_imports

    table = _feature_table()
    if table is None:
        pytest.skip("PySide6 has no import hook here")
    hook = builtins.__import__
    fresh = [m for m in ("xml.dom.pulldom", "wsgiref.simple_server", "mailbox") if m not in sys.modules]
    assert fresh, "needs a standard-library module this process has not imported yet"
    with plain_imports():
        assert builtins.__import__ is builtins.__orig_import__
        importlib.import_module(fresh[0])
    assert builtins.__import__ is hook
    assert table[fresh[0]] == -1
    with pytest.raises(ZeroDivisionError):       # the hook comes back after an error too
        with plain_imports():
            1 / 0
    assert builtins.__import__ is hook
