"""Where stored masks came from (``label_sources``) for ``Project``: written with their label,
read back per label or summed per source for effort and accuracy reports."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from ._part import ProjectPart
from .errors import ProjectError
from .records import MASK_SOURCES, MaskSource

if TYPE_CHECKING:
    from .records import LabelRecord

__all__ = ["SourcesMixin", "text_sources"]


def text_sources(labels: np.ndarray, classes: list[str]) -> list[MaskSource]:
    """A text proposal's sources: every class it marks, all of its pixels from ``text``."""
    counts = np.bincount(np.asarray(labels).ravel().astype(np.int64), minlength=len(classes) + 1)
    return [MaskSource(c, "text", int(counts[k + 1])) for k, c in enumerate(classes) if counts[k + 1]]


def check_sources(sources: Iterable[MaskSource], classes: list[str]) -> list[MaskSource]:
    """The sources, checked against the label's classes before anything is written."""
    out, names, seen = list(sources), {c.lower() for c in classes}, set()
    for s in out:
        if s.source not in MASK_SOURCES:
            raise ProjectError(f"unknown mask source {s.source!r}; expected one of {MASK_SOURCES}")
        if s.class_name.lower() not in names:
            raise ProjectError(f"mask source names class {s.class_name!r}, which the label does not hold")
        if s.pixels is not None and s.pixels < 0:
            raise ProjectError(f"mask source pixels must be >= 0, got {s.pixels}")
        key = (s.class_name.lower(), s.source)
        if key in seen:
            raise ProjectError(f"mask source {s.source!r} of {s.class_name!r} given twice")
        seen.add(key)
    return out


class SourcesMixin(ProjectPart):

    def _insert_sources(self, label_id: int, names: list[str], sources: list[MaskSource]) -> None:
        """Write ``sources`` of a label being stored (inside the caller's transaction)."""
        canon = {c.lower(): c for c in names}
        self._db.executemany(
            "INSERT INTO label_sources(label_id, class, source, pixels, objects, score) VALUES (?, ?, ?, ?, ?, ?)",
            [(label_id, canon[s.class_name.lower()], s.source, s.pixels, int(s.objects),
              None if s.score is None else float(s.score)) for s in sources])

    def label_sources(self, label: LabelRecord | int | None = None) -> list[MaskSource]:
        """The recorded sources of one label (record or id), or of every label."""
        if label is None:
            rows = self._query("SELECT * FROM label_sources ORDER BY label_id, id")
        else:
            lid = label if isinstance(label, int) else label.id
            rows = self._query("SELECT * FROM label_sources WHERE label_id=? ORDER BY id", (lid,))
        return [MaskSource.from_row(r) for r in rows]

    def source_summary(self, kinds: tuple[str, ...] = ("corrected",)) -> dict[str, dict[str, Any]]:
        """source -> labels, pixels (known ones), objects and the labels' mean Dice against their
        proposal and mean seconds, over the labels of ``kinds``: effort and accuracy per source."""
        marks = ",".join("?" * len(kinds)) or "NULL"
        rows = self._query(
            "SELECT s.source, count(DISTINCT s.label_id), sum(s.pixels), sum(s.objects),"
            " avg(l.dice_vs_proposal), avg(l.seconds) FROM label_sources s JOIN labels l ON l.id = s.label_id"
            f" WHERE l.kind IN ({marks}) GROUP BY s.source ORDER BY s.source", tuple(kinds))
        return {r[0]: {"labels": r[1], "pixels": r[2], "objects": r[3], "dice_vs_proposal": r[4], "seconds": r[5]}
                for r in rows}
