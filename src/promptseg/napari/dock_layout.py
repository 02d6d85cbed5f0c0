"""The dock's layout: the main loop always in view, the details in tabs.

Always in view, top to bottom: what to do first (only while no image is open), the image,
the class prompt and Propose, the threshold and device, the message line, Accept, and
Retrain with its progress. Below them, tabs: Refine, Project (folder, image list), Train
(the loss plot and the rounds table) and 3-D. Each tab scrolls on its own if the dock is
short, so the main loop never scrolls away.

The dock draws in steps when it opens: the main loop first, the tabs on the next turn after
its first paint (they keep their room meanwhile, so nothing moves), so no single turn lays out
and paints the whole dock.
"""
from __future__ import annotations

from typing import Callable

from qtpy.QtCore import QEvent, QObject, Qt
from qtpy.QtWidgets import QFrame, QScrollArea, QTabWidget, QVBoxLayout, QWidget

from .layers import next_turn

TABS = ("Refine", "Project", "Train", "3-D")

FIRST_USE = ("<b>Start here.</b> 1. Open an image: File &gt; Open, or File &gt; Open Sample &gt; PromptSeg "
             "&gt; nuclei. 2. Type a class, e.g. <i>nucleus</i>. 3. Propose (Shift+P), then correct the "
             "labels layer with napari's brush.<br>A project (Project tab) is optional: it keeps the "
             "accepted labels and lets Retrain adapt the model to them.")


def scrolled(*sections: QWidget) -> QScrollArea:
    """``sections`` stacked in a vertical-only scroll area with no frame."""
    inner = QWidget()
    lay = QVBoxLayout(inner)
    lay.setContentsMargins(2, 2, 2, 2)
    for s in sections:
        lay.addWidget(s)
    lay.addStretch(1)
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    area.setWidget(inner)
    return area


def build(widget, main: list[QWidget], tabs: dict[str, list[QWidget]]) -> QTabWidget:
    """Lay ``widget`` out: ``main`` always visible, then one tab per ``tabs`` entry. Returns
    the tab widget."""
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(2, 2, 2, 2)
    outer.setSpacing(2)
    for section in main:
        outer.addWidget(section)
    tab_widget = QTabWidget()
    tab_widget.setDocumentMode(True)
    policy = tab_widget.sizePolicy()
    policy.setRetainSizeWhenHidden(True)       # hidden until the main loop has drawn, in place
    tab_widget.setSizePolicy(policy)
    tab_widget.hide()
    for title, sections in tabs.items():
        tab_widget.addTab(scrolled(*sections), title)
    outer.addWidget(tab_widget, 1)
    return tab_widget


def tab_of(tab_widget: QTabWidget, section: QWidget) -> int:
    """The index of the tab that holds ``section`` (-1 for none: then it is always in view)."""
    for i in range(tab_widget.count()):
        page = tab_widget.widget(i)
        if page is section or page.isAncestorOf(section):
            return i
    return -1


class _FirstPaint(QObject):
    def __init__(self, widget: QWidget, then: Callable[[], None]) -> None:
        super().__init__(widget)
        self.then = then
        widget.installEventFilter(self)

    def eventFilter(self, source, event) -> bool:
        if event.type() == QEvent.Paint:
            source.removeEventFilter(self)
            next_turn(self.then)                 # after the paint, on a turn of its own
        return False


def after_first_paint(widget: QWidget, then: Callable[[], None]) -> None:
    """Call ``then`` on the event-loop turn after ``widget`` first paints."""
    _FirstPaint(widget, then)


def draw_in_steps(widget: QWidget, tabs: QTabWidget, then: Callable[[], None]) -> None:
    """Once ``widget`` (the main loop) has painted, show the (hidden) ``tabs``; once they have
    painted, call ``then``."""
    def show_tabs() -> None:
        tabs.show()
        after_first_paint(tabs, then)

    after_first_paint(widget, show_tabs)
