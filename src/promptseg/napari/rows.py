"""One row of widgets side by side, the layout every dock section builds its button rows with."""
from __future__ import annotations

from qtpy.QtWidgets import QHBoxLayout, QWidget


def hrow(*widgets: QWidget, stretch: QWidget | None = None) -> QWidget:
    """A borderless row of ``widgets``; ``stretch`` (one of them) takes the spare width."""
    row = QWidget()
    lay = QHBoxLayout(row)
    lay.setContentsMargins(0, 0, 0, 0)
    for w in widgets:
        lay.addWidget(w, 1 if w is stretch else 0)
    return row
