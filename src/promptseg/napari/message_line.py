"""One message line per dock section: the latest message only, next to the controls it is about.

A new message replaces the old one; the same message again is not repeated (nor re-notified);
a message raised for a cause clears when that cause is cleared. Warnings and errors are also
sent to napari's notifications, once each, where users look for them.
"""
from __future__ import annotations

from qtpy.QtWidgets import QLabel

LEVELS = ("info", "warning", "error")
_PREFIX = {"info": "", "warning": "⚠ ", "error": "⛔ "}


class MessageLine(QLabel):
    def __init__(self, text: str = "", notify: bool = True) -> None:
        super().__init__("")
        self.setWordWrap(True)
        self.notify = notify            # forward warnings/errors to napari's notifications
        self.level: str = "info"
        self.message: str = ""          # the text without its level prefix
        self.cause: str | None = None   # what the message is about, so that it can be cleared
        if text:
            self.say(text)

    def say(self, text: str, level: str = "info", cause: str | None = None) -> None:
        """Show ``text`` in place of the current message (nothing happens if it is already shown)."""
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, not {level!r}")
        text = text.removeprefix("⚠ ").removeprefix("⛔ ")
        if text == self.message and level == self.level:
            self.cause = cause if cause is not None else self.cause
            return
        self.message, self.level, self.cause = text, level, cause
        self.setText(_PREFIX[level] + text)
        self.setToolTip(text if len(text) > 80 else "")
        self.setStyleSheet({"info": "", "warning": "color: #e0a040", "error": "color: #ff6060"}[level])
        if self.notify and level != "info":
            _notify(text, level)

    def warn(self, text: str, cause: str | None = None) -> None:
        self.say(text, "warning", cause)

    def error(self, text: str, cause: str | None = None) -> None:
        self.say(text, "error", cause)

    def clear_cause(self, cause: str) -> None:
        """Clear the message if it was raised for ``cause`` (its cause is gone)."""
        if self.cause == cause:
            self.clear()

    def clear(self) -> None:  # noqa: D102 (QLabel.clear, plus our state)
        self.message, self.level, self.cause = "", "info", None
        self.setStyleSheet("")
        self.setToolTip("")
        super().clear()


def _notify(text: str, level: str) -> None:
    try:
        from napari.utils.notifications import show_error, show_warning
    except ImportError:   # the line works without napari (the widget is plain Qt)
        return
    (show_error if level == "error" else show_warning)(text)
