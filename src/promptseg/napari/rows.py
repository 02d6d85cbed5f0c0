"""Small widget builders every dock section uses: a row of widgets side by side, a button with its tooltip."""
from __future__ import annotations

from qtpy.QtWidgets import QHBoxLayout, QPushButton, QWidget


def hrow(*widgets: QWidget, stretch: QWidget | None = None) -> QWidget:
    """A borderless row of ``widgets``; ``stretch`` (one of them) takes the spare width."""
    row = QWidget()
    lay = QHBoxLayout(row)
    lay.setContentsMargins(0, 0, 0, 0)
    for w in widgets:
        lay.addWidget(w, 1 if w is stretch else 0)
    return row


def button(text: str, tooltip: str) -> QPushButton:
    """A push button with its tooltip: every control of the dock says what it does."""
    btn = QPushButton(text)
    btn.setToolTip(tooltip)
    return btn
