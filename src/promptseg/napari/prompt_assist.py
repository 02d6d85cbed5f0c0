"""Autocomplete for the prompt field: project classes plus prompt history, per ';' segment."""
from __future__ import annotations

from qtpy.QtCore import QStringListModel, Qt
from qtpy.QtWidgets import QCompleter, QLineEdit


class SegmentCompleter(QCompleter):
    """Completes the class name after the last ';' and keeps the ones before it."""

    def __init__(self, edit: QLineEdit) -> None:
        self._model = QStringListModel()
        super().__init__(self._model, edit)
        self.setCaseSensitivity(Qt.CaseInsensitive)
        self.setFilterMode(Qt.MatchContains)
        self.setCompletionMode(QCompleter.PopupCompletion)
        self._edit = edit
        edit.setCompleter(self)

    def set_words(self, words: list[str]) -> None:
        seen: dict[str, str] = {}
        for w in words:
            w = " ".join(str(w).split())
            if w and w.lower() not in seen:
                seen[w.lower()] = w
        self._model.setStringList(sorted(seen.values(), key=str.lower))

    def words(self) -> list[str]:
        return self._model.stringList()

    def splitPath(self, path: str) -> list[str]:  # noqa: N802 (Qt name)
        return [path.split(";")[-1].strip()]

    def pathFromIndex(self, index) -> str:  # noqa: N802 (Qt name)
        head = self._edit.text().rsplit(";", 1)
        prefix = head[0] + "; " if len(head) == 2 else ""
        return prefix + str(index.data())


def completion_words(project, history: list[str]) -> list[str]:
    """Class names, their synonyms, and each class name typed in past prompts."""
    words: list[str] = []
    if project is not None:
        for c in project.classes():
            words += [c.name, *c.synonyms]
        for lab in project.labels():
            if lab.prompt:
                words += [p for p in lab.prompt.split(";")]
    for h in history:
        words += h.split(";")
    return [w.strip() for w in words if w.strip()]
