"""Immutable records returned by ``Project``; they decode the JSON columns."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ProjectError

LABEL_KINDS = ("proposal", "corrected", "gold")
ROUND_STATUSES = ("running", "done", "failed", "cancelled")


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


def spatial_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Image shape without a trailing RGB(A) channel axis (only for 2-D colour images)."""
    if len(shape) == 3 and shape[-1] in (3, 4):
        return tuple(shape[:2])
    return tuple(shape)


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

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return spatial_shape(self.shape)

    @classmethod
    def from_row(cls, row: sqlite3.Row, root: Path) -> ImageRecord:
        spacing = _loads(row["spacing"], None)
        return _record(cls, row, path=root / row["path"], shape=tuple(json.loads(row["shape"])),
                       spacing=None if spacing is None else tuple(spacing))


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
        return _record(cls, row, path=root / row["path"], classes=list(json.loads(row["classes"])))


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
        return _record(cls, row, path=root / row["path"], config=dict(_loads(row["config"], {})),
                       metrics=dict(_loads(row["metrics"], {})), active=bool(row["active"]))


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
