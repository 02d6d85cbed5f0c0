"""Label-map storage for ``Project`` (split out to keep store.py readable)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .atomic import atomic_write_tiff
from ._part import ProjectPart
from .errors import ProjectError
from .paths import check_space, checked_path, space_error
from ._sources import check_sources, text_sources
from .records import LABEL_KINDS, ImageRecord, LabelRecord, MaskSource, dumps

__all__ = ["LabelsMixin"]

_LABEL_SELECT = (
    "SELECT labels.*, images.name AS image_name FROM labels JOIN images ON images.id = labels.image_id"
)


def _check_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in LABEL_KINDS]
    if bad:
        raise ProjectError(f"unknown label kind(s) {bad}; expected one of {LABEL_KINDS}")
    return kinds


def _max_version_on_disk(folder: Path) -> int:
    # Files left by a crash between file write and DB commit must not be reused.
    best = 0
    if folder.is_dir():
        for p in folder.glob("*.tif"):
            if p.stem.isdigit():
                best = max(best, int(p.stem))
    return best


class LabelsMixin(ProjectPart):

    def _validate_label(self, rec: ImageRecord, labels: np.ndarray, classes: list[str]) -> np.ndarray:
        arr = np.asarray(labels)
        if arr.dtype == bool:
            arr = arr.astype(np.uint8)
        if not np.issubdtype(arr.dtype, np.integer):
            raise ProjectError(f"label array must have an integer dtype, got {arr.dtype}")
        if arr.ndim not in (2, 3):
            raise ProjectError(f"label array must be 2-D or 3-D, got {arr.ndim}-D shape {arr.shape}")
        if tuple(arr.shape) != rec.spatial_shape:
            raise ProjectError(
                f"label shape {tuple(arr.shape)} does not match image {rec.name!r} "
                f"spatial shape {rec.spatial_shape}"
            )
        n = len(classes)
        if n > np.iinfo(np.uint16).max:
            raise ProjectError(f"too many classes ({n}); at most 65535 are supported")
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo < 0 or hi > n:
            raise ProjectError(
                f"label values must be in 0..{n} for {n} class(es); found values {lo}..{hi}"
            )
        return arr.astype(np.uint8 if n <= 255 else np.uint16, copy=False)

    def save_label(
        self,
        image: ImageRecord | str | int,
        labels: np.ndarray,
        classes: list[str],
        kind: str,
        *,
        model_version: int | None = None,
        prompt: str | None = None,
        dice_vs_proposal: float | None = None,
        edited_fraction: float | None = None,
        seconds: float | None = None,
        sources: list[MaskSource] | None = None,
    ) -> LabelRecord:
        """Store a new label version for ``image``; value i+1 means ``classes[i]``. ``sources``:
        where its pixels came from, stored with it (default: a proposal's are the text model's,
        other kinds record none)."""
        if kind not in LABEL_KINDS:
            raise ProjectError(f"invalid label kind {kind!r}; expected one of {LABEL_KINDS}")
        if isinstance(classes, str):
            raise ProjectError("classes must be a list of class names, not a single string")
        names = [str(c).strip() for c in classes]
        if any(not c for c in names):
            raise ProjectError("class names must not be empty")
        if len({c.lower() for c in names}) != len(names):
            raise ProjectError(f"duplicate class names in {names}")
        rec = self.image(image)
        arr = self._validate_label(rec, labels, names)
        if sources is None:
            sources = text_sources(arr, names) if kind == "proposal" else []
        sources = check_sources(sources, names)
        with self._lock:
            folder = checked_path(self.root, f"labels/{rec.name}", f"images row {rec.id}")
            # A compressed label is never larger than its raw bytes (plus the TIFF header).
            check_space(self.root, arr.nbytes + (64 << 10))
            # Canonical spelling from the class table, so "Liver" and "liver" agree.
            names = [self.add_class(c).name for c in names]
            db_max = self._query(
                "SELECT coalesce(max(version), 0) FROM labels WHERE image_id=?", (rec.id,)
            )[0][0]
            version = max(int(db_max), _max_version_on_disk(folder)) + 1
            try:
                while True:
                    rel = f"labels/{rec.name}/{version}.tif"
                    try:
                        # exclusive: an existing version file is never overwritten, even
                        # by another process racing for the same number.
                        atomic_write_tiff(checked_path(self.root, rel, f"images row {rec.id}"), arr,
                                          exclusive=True)
                        break
                    except FileExistsError:
                        version += 1
                with self._db:
                    cur = self._db.execute(
                        "INSERT INTO labels(image_id, version, path, kind, classes, model_version, prompt,"
                        " dice_vs_proposal, edited_fraction, seconds, created)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (rec.id, version, rel, kind, dumps(names), model_version, prompt,
                         _opt_float(dice_vs_proposal), _opt_float(edited_fraction), _opt_float(seconds),
                         time.time()),
                    )
                    self._insert_sources(cur.lastrowid, names, sources)
            except (OSError, sqlite3.OperationalError) as exc:
                full = space_error(exc, self.root, arr.nbytes)
                if full is None:
                    raise
                raise full from None
            row = self._query(_LABEL_SELECT + " WHERE labels.id=?", (cur.lastrowid,))[0]
            return LabelRecord.from_row(row, self.root)

    def labels(
        self, image: ImageRecord | str | int | None = None, kinds: tuple[str, ...] | None = None
    ) -> list[LabelRecord]:
        """All label versions, optionally for one image and/or some kinds, oldest first."""
        where: list[str] = []
        params: list[Any] = []
        if image is not None:
            where.append("labels.image_id=?")
            params.append(self.image(image).id)
        if kinds is not None:
            kinds = _check_kinds(kinds)
            where.append(f"labels.kind IN ({','.join('?' * len(kinds))})" if kinds else "0")
            params.extend(kinds)
        sql = _LABEL_SELECT + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._query(sql + " ORDER BY labels.image_id, labels.version", params)
        return [LabelRecord.from_row(r, self.root) for r in rows]

    def latest_label(
        self, image: ImageRecord | str | int, kinds: tuple[str, ...] = ("gold", "corrected")
    ) -> LabelRecord | None:
        """Highest-version label of ``image`` among ``kinds``, or None."""
        found = self.labels(image, kinds)
        return found[-1] if found else None

    def read_label(self, rec: LabelRecord) -> tuple[np.ndarray, list[str]]:
        import tifffile

        path = checked_path(self.root, rec.path.relative_to(self.root).as_posix(), f"labels row {rec.id}")
        if not path.is_file():
            raise ProjectError(f"label file is missing: {path}")
        try:
            return np.asarray(tifffile.imread(path)), list(rec.classes)
        except Exception as exc:   # the library's message may quote the file's bytes: name the type only
            raise ProjectError(f"label file {path} is not a readable TIFF ({type(exc).__name__})") from None

    def _images_with_labels(self, kinds: tuple[str, ...], negate: bool) -> list[ImageRecord]:
        kinds = _check_kinds(kinds)
        marks = ",".join("?" * len(kinds)) or "NULL"
        sql = (
            f"SELECT * FROM images WHERE {'NOT ' if negate else ''}EXISTS ("
            f"SELECT 1 FROM labels WHERE labels.image_id = images.id AND labels.kind IN ({marks}))"
            " ORDER BY id"
        )
        return [ImageRecord.from_row(r, self.root) for r in self._query(sql, kinds)]

    def labelled_images(self, kinds: tuple[str, ...] = ("gold", "corrected")) -> list[ImageRecord]:
        return self._images_with_labels(kinds, negate=False)

    def unlabelled_images(self, kinds: tuple[str, ...] = ("gold", "corrected")) -> list[ImageRecord]:
        return self._images_with_labels(kinds, negate=True)


def _opt_float(value: float | None) -> float | None:
    return None if value is None else float(value)
