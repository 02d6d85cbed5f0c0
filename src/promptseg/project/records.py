"""Immutable records returned by ``Project``; they decode the JSON columns."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ProjectError
from .paths import check_name, checked_path

LABEL_KINDS = ("proposal", "corrected", "gold")
# Where a stored mask's pixels came from: the text model's proposal, a box, clicks, "more like
# this" exemplars, or the annotator's brush.
MASK_SOURCES = ("text", "box", "click", "exemplar", "painted")
# "interrupted": marked "running" but no process holds the project's round lock (killed).
ROUND_STATUSES = ("running", "done", "failed", "cancelled", "interrupted")


def dumps(obj: Any) -> str:
    """JSON-encode a column value, turning unserialisable input into a ProjectError."""
    try:
        return json.dumps(obj, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ProjectError(f"value is not JSON-serialisable: {exc}") from exc


def _loads(text: str | None, default: Any) -> Any:
    return default if text is None else json.loads(text)


def _record(cls, row: sqlite3.Row, **decoded: Any):
    """A record from its row: the ``decoded`` columns as given, every other field as stored."""
    return cls(**{f.name: decoded[f.name] if f.name in decoded else row[f.name] for f in fields(cls)})


def spatial_shape(shape: tuple[int, ...], rgb: bool | None = None) -> tuple[int, ...]:
    """Image shape without a trailing RGB(A) channel axis. ``rgb`` None (images stored before
    the flag existed, or arrays of unknown origin): a 3-D shape ending in 3 or 4 is colour."""
    if rgb is None:
        rgb = len(shape) == 3 and shape[-1] in (3, 4)
    return tuple(shape[:-1]) if rgb else tuple(shape)


def _row_name(name: object, where: str) -> str:
    try:
        return check_name(name)
    except ProjectError as exc:
        raise ProjectError(f"{where}: {exc}; the project was edited outside promptseg and is refused") from None


@dataclass(frozen=True)
class ImageRecord:
    id: int
    name: str
    path: Path
    sha256: str
    shape: tuple[int, ...]
    dtype: str
    source: str | None
    spacing: tuple[float, ...] | None
    added: float
    rgb: bool | None = None

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return spatial_shape(self.shape, self.rgb)

    @classmethod
    def from_row(cls, row: sqlite3.Row, root: Path) -> ImageRecord:
        spacing = _loads(row["spacing"], None)
        where = f"images row {row['id']}"
        rgb = row["rgb"] if "rgb" in row.keys() else None
        return _record(cls, row, name=_row_name(row["name"], where), path=checked_path(root, row["path"], where),
                       shape=tuple(json.loads(row["shape"])), spacing=None if spacing is None else tuple(spacing),
                       rgb=None if rgb is None else bool(rgb))


@dataclass(frozen=True)
class ClassRecord:
    id: int
    name: str
    color: str
    synonyms: list[str]
    # Arrays do not compare/hash cleanly, so keep them out of __eq__.
    embedding: np.ndarray | None = field(compare=False, repr=False)
    embedding_model: str | None
    created: float

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> ClassRecord:
        blob = row["embedding"]
        return _record(cls, row, synonyms=list(_loads(row["synonyms"], [])),
                       embedding=None if blob is None else np.frombuffer(blob, dtype=np.float32).copy())


@dataclass(frozen=True)
class LabelRecord:
    id: int
    image_id: int
    image_name: str
    version: int
    path: Path
    kind: str
    classes: list[str]
    model_version: int | None
    prompt: str | None
    dice_vs_proposal: float | None
    edited_fraction: float | None
    seconds: float | None
    created: float

    @classmethod
    def from_row(cls, row: sqlite3.Row, root: Path) -> LabelRecord:
        return _record(cls, row, image_name=_row_name(row["image_name"], f"images row {row['image_id']}"),
                       path=checked_path(root, row["path"], f"labels row {row['id']}"),
                       classes=list(json.loads(row["classes"])))


@dataclass(frozen=True)
class ModelRecord:
    version: int
    path: Path
    parent: int | None
    config: dict[str, Any]
    metrics: dict[str, Any]
    sha256: str | None
    created: float
    active: bool

    @classmethod
    def from_row(cls, row: sqlite3.Row, root: Path) -> ModelRecord:
        return _record(cls, row, path=checked_path(root, row["path"], f"models row {row['version']}"),
                       config=dict(_loads(row["config"], {})), metrics=dict(_loads(row["metrics"], {})),
                       active=bool(row["active"]))


@dataclass(frozen=True)
class RoundRecord:
    id: int
    config: dict[str, Any]
    status: str
    metrics: dict[str, Any]
    model_version: int | None
    started: float
    finished: float | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> RoundRecord:
        return _record(cls, row, config=dict(_loads(row["config"], {})), metrics=dict(_loads(row["metrics"], {})))


@dataclass(frozen=True)
class MaskSource:
    """The pixels of one class in one label that came from one source (``pixels`` None: not
    known, for labels stored before sources were recorded); ``objects`` made from it and their
    mean predicted quality ``score`` (None when not predicted)."""
    class_name: str
    source: str
    pixels: int | None
    objects: int = 0
    score: float | None = None
    label_id: int | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> MaskSource:
        return cls(row["class"], row["source"], row["pixels"], row["objects"], row["score"], row["label_id"])
