"""The on-disk project store: a folder of TIFFs plus one SQLite index.

Files are always written (atomically) *before* the row that references them is
committed, so after a crash the database never points at a missing or partial
file; at worst an unreferenced file is left behind and later skipped over.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..fsutil import array_sha256
from . import schema
from ._labels import LabelsMixin
from ._models import ModelsMixin
from ._sources import SourcesMixin
from ._status import StatusMixin
from .atomic import atomic_write_tiff
from ..io.limits import check_pixels
from .errors import ProjectError
from .lock import recover_interrupted
from .paths import SpaceError, check_name, check_space, checked_path, space_error
from .records import ClassRecord, ImageRecord, dumps

__all__ = ["Project", "DB_NAME", "PALETTE"]

DB_NAME = "project.sqlite"
SUBDIRS = ("images", "labels", "models", "embeddings", "exports")

# Distinct, colour-blind-friendly-ish colours handed out in class creation order.
PALETTE = (
    "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0",
    "#f032e6", "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8",
    "#800000", "#aaffc3", "#808000", "#ffd8b1", "#000075", "#808080",
)


def _check_color(color: str) -> str:
    c = color.strip().lower()
    if len(c) != 7 or c[0] != "#" or any(ch not in "0123456789abcdef" for ch in c[1:]):
        raise ProjectError(f"invalid colour {color!r}: expected '#rrggbb'")
    return c


def _read_image_file(path: Path) -> tuple[np.ndarray, bool]:
    """(array, is colour) of an image file, through the format-aware reader."""
    from ..io.readers import read_image

    if not path.is_file():
        raise ProjectError(f"image file not found: {path}")
    try:
        array, meta = read_image(path)
    except ValueError as exc:
        raise ProjectError(str(exc)) from None
    return np.asarray(array), bool(meta.get("rgb", False))


class Project(LabelsMixin, ModelsMixin, StatusMixin, SourcesMixin):
    """A promptseg project folder.  Use ``create``/``open``/``open_or_create``."""

    def __init__(self, root: Path, conn: sqlite3.Connection) -> None:
        self.root = root
        self._db = conn
        # One connection is shared by all threads; serialise access to it.
        self._lock = threading.RLock()
        row = conn.execute("SELECT value FROM meta WHERE key='name'").fetchone()
        self.name: str = row[0] if row else root.name

    # ---------------------------------------------------------------- lifecycle
    @classmethod
    def create(cls, path: str | os.PathLike[str], name: str | None = None) -> Project:
        """Make a new project folder; fails if one already exists there."""
        root = Path(path).expanduser().absolute()
        if (root / DB_NAME).exists():
            raise ProjectError(f"{root} already holds a promptseg project")
        if root.exists() and not root.is_dir():
            raise ProjectError(f"{root} exists and is not a folder")
        for sub in SUBDIRS:
            (root / sub).mkdir(parents=True, exist_ok=True)
        project = cls._connect(root)
        with project._lock, project._db:
            project._db.executemany(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                [("name", name or root.name), ("created", repr(time.time()))],
            )
        project.name = name or root.name
        return project

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Project:
        """Open an existing project; ProjectError if missing, foreign or corrupt."""
        root = Path(path).expanduser().absolute()
        if not root.is_dir():
            raise ProjectError(f"no promptseg project at {root}: folder does not exist")
        if not (root / DB_NAME).is_file():
            raise ProjectError(f"{root} is not a promptseg project (no {DB_NAME})")
        if (root / DB_NAME).stat().st_size == 0:
            kept = [p for sub in ("images", "labels", "models") if (root / sub).is_dir()
                    for p in (root / sub).rglob("*") if p.is_file()]
            if kept:
                raise ProjectError(
                    f"{root / DB_NAME} is empty but the project folder still holds {len(kept)} files "
                    f"(e.g. {kept[0].relative_to(root)}): its index was lost; refusing to start it afresh. "
                    "Restore project.sqlite from a backup, or move the folder away")
        for sub in SUBDIRS:  # tolerate folders deleted by hand
            try:
                (root / sub).mkdir(exist_ok=True)
            except OSError as exc:
                raise space_error(exc, root, 4096) or ProjectError(f"cannot create {root / sub}: {exc}") from None
        project = cls._connect(root)
        try:
            project._check_rows()
            recover_interrupted(project)
        except BaseException:
            project.close()
            raise
        return project

    @classmethod
    def open_or_create(cls, path: str | os.PathLike[str]) -> Project:
        root = Path(path).expanduser().absolute()
        return cls.open(root) if (root / DB_NAME).exists() else cls.create(root)

    @classmethod
    def open_read_only(cls, path: str | os.PathLike[str]) -> Project:
        """Open without writing anything (no migration, no recovery, SQLite's immutable mode), for
        reports on a full disk; it sees the database as last checkpointed. Do not write through it."""
        root = Path(path).expanduser().absolute()
        db_path = root / DB_NAME
        if not db_path.is_file():
            raise ProjectError(f"{root} is not a promptseg project (no {DB_NAME})")
        conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro&immutable=1", uri=True,
                               check_same_thread=False)
        conn.row_factory = sqlite3.Row
        try:
            version = schema.get_version(conn)
            if version != schema.SCHEMA_VERSION:
                raise ProjectError(f"{db_path} has schema {version}, not {schema.SCHEMA_VERSION}: open it once "
                                   "with free disk space so it can be upgraded")
            project = cls(root, conn)
            project._check_rows()
            return project
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise ProjectError(f"{db_path} is not a readable promptseg project: {exc}") from exc
        except BaseException:
            conn.close()
            raise

    @classmethod
    def _connect(cls, root: Path) -> Project:
        db_path = root / DB_NAME
        conn: sqlite3.Connection | None = None
        try:
            conn = schema.connect(str(db_path))
            if schema.get_version(conn) == 0:
                tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
                if tables:  # some other application's database
                    raise ProjectError(f"{db_path} is not a promptseg project database")
            schema.migrate(conn)
            conn.execute("SELECT count(*) FROM images").fetchone()
            return cls(root, conn)
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            full = space_error(exc, root, 1 << 20)
            if full is None and shutil.disk_usage(root).free < (1 << 20):   # SQLite may say "disk I/O error"
                full = SpaceError(f"no space left on the project's disk: 1 MB needed to open {db_path} "
                                  f"for writing ({exc})")
            if full is not None:   # a full disk is not a corrupt project
                raise full from None
            raise ProjectError(f"{db_path} is not a readable promptseg project: {exc}") from exc
        except BaseException:
            if conn is not None:
                conn.close()
            raise

    def _check_rows(self) -> None:
        """Refuse a project whose database names paths outside it (every row is checked)."""
        self.images()
        self.labels()
        self.models()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Project({str(self.root)!r}, name={self.name!r})"

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, tuple(params)).fetchall()

    # ------------------------------------------------------------------- images
    def add_image(
        self,
        image: np.ndarray | str | os.PathLike[str],
        name: str | None = None,
        spacing: tuple[float, ...] | None = None,
        rgb: bool | None = None,
    ) -> ImageRecord:
        """Copy an image into the project (idempotent for identical name + content). ``rgb``:
        whether the last axis is colour; None guesses (a 3-D array ending in 3 or 4 is colour),
        so volumes should pass False."""
        if isinstance(image, np.ndarray):
            array, source = image, "array"
        else:
            src = Path(image).expanduser().absolute()
            (array, read_rgb), source = _read_image_file(src), str(src)
            rgb = read_rgb if rgb is None else rgb
            name = name if name is not None else src.stem
        if array.ndim < 2 or array.size == 0:
            raise ProjectError(f"image must be a non-empty array with >=2 dims, got shape {array.shape}")
        try:
            check_pixels(array.shape[:-1] if rgb or (rgb is None and array.ndim == 3 and array.shape[-1] in (3, 4))
                         else array.shape, f"image {name!r}" if name else "image")
        except ValueError as exc:   # before hashing, which copies the whole array
            raise ProjectError(str(exc)) from None
        if rgb is None:
            rgb = array.ndim == 3 and array.shape[-1] in (3, 4)
        if rgb and (array.ndim < 3 or array.shape[-1] not in (3, 4)):
            raise ProjectError(f"a colour image needs 3 or 4 channels in its last axis, got shape {array.shape}")
        sha = array_sha256(array)
        # Content-derived default name keeps re-adding the same array idempotent.
        name = check_name(name if name is not None else f"image-{sha[:12]}")
        spacing_json = None
        if spacing is not None:
            try:
                spacing_json = dumps([float(s) for s in spacing])
            except (TypeError, ValueError) as exc:
                raise ProjectError(f"invalid spacing {spacing!r}: {exc}") from exc
        with self._lock:
            existing = self._query("SELECT * FROM images WHERE name=?", (name,))
            if existing:
                rec = ImageRecord.from_row(existing[0], self.root)
                if rec.sha256 == sha:
                    return rec
                raise ProjectError(
                    f"an image named {name!r} already exists with different content; choose another name"
                )
            rel = f"images/{name}.tif"
            target = checked_path(self.root, rel, f"image {name!r}")
            check_space(self.root, array.nbytes + (1 << 20))
            try:
                # No row references this path yet, so replacing a crash leftover is safe.
                atomic_write_tiff(target, array)
                with self._db:
                    cur = self._db.execute(
                        "INSERT INTO images(name, path, sha256, shape, dtype, source, spacing, added, rgb)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (name, rel, sha, dumps(list(array.shape)), str(array.dtype), source,
                         spacing_json, time.time(), int(bool(rgb))),
                    )
            except (OSError, sqlite3.OperationalError) as exc:
                full = space_error(exc, self.root, array.nbytes)
                if full is None:
                    raise
                raise full from None
            return self.image(int(cur.lastrowid))

    def images(self) -> list[ImageRecord]:
        return [ImageRecord.from_row(r, self.root) for r in self._query("SELECT * FROM images ORDER BY id")]

    def image(self, name_or_id: str | int | ImageRecord) -> ImageRecord:
        """Look an image up by name, id or (refreshing) record."""
        if isinstance(name_or_id, ImageRecord):
            name_or_id = name_or_id.id
        if isinstance(name_or_id, (int, np.integer)) and not isinstance(name_or_id, bool):
            rows = self._query("SELECT * FROM images WHERE id=?", (int(name_or_id),))
            if not rows:
                raise ProjectError(f"no image with id {int(name_or_id)}")
        else:
            rows = self._query("SELECT * FROM images WHERE name=?", (str(name_or_id),))
            if not rows:
                raise ProjectError(f"no image named {str(name_or_id)!r}")
        return ImageRecord.from_row(rows[0], self.root)

    def read_image(self, rec_or_name: ImageRecord | str | int) -> np.ndarray:
        import tifffile

        rec = self.image(rec_or_name)
        path = checked_path(self.root, rec.path.relative_to(self.root).as_posix(), f"images row {rec.id}")
        if not path.is_file():
            raise ProjectError(f"image file for {rec.name!r} is missing: {path}")
        try:
            return np.asarray(tifffile.imread(path))
        except Exception as exc:   # the library's message may quote the file's bytes: name the type only
            raise ProjectError(f"image file for {rec.name!r} ({path}) is not a readable TIFF "
                               f"({type(exc).__name__})") from None

    # ------------------------------------------------------------------ classes
    def add_class(self, name: str, color: str | None = None, synonyms: Iterable[str] = ()) -> ClassRecord:
        """Get-or-create a class by (case-insensitive) name; new synonyms are merged in."""
        name = str(name).strip()
        if not name:
            raise ProjectError("class name must not be empty")
        if any(ord(ch) < 32 for ch in name):
            raise ProjectError(f"class name {name!r} must not hold control characters (NUL, newline, ...)")
        with self._lock:
            rows = self._query("SELECT * FROM classes WHERE lower(name)=lower(?)", (name,))
            if rows:
                rec = ClassRecord.from_row(rows[0])
            else:
                if color is None:
                    count = self._query("SELECT count(*) FROM classes")[0][0]
                    color = PALETTE[count % len(PALETTE)]
                with self._db:
                    cur = self._db.execute(
                        "INSERT INTO classes(name, color, synonyms, created) VALUES (?, ?, ?, ?)",
                        (name, _check_color(color), "[]", time.time()),
                    )
                rec = ClassRecord.from_row(
                    self._query("SELECT * FROM classes WHERE id=?", (cur.lastrowid,))[0]
                )
            for syn in synonyms:
                rec = self.add_synonym(rec.name, syn)
            return rec

    def classes(self) -> list[ClassRecord]:
        return [ClassRecord.from_row(r) for r in self._query("SELECT * FROM classes ORDER BY id")]

    def class_by_name(self, name: str) -> ClassRecord | None:
        """Find a class whose name or any synonym equals ``name`` (case-insensitive)."""
        key = str(name).strip().lower()
        classes = self.classes()
        for rec in classes:  # exact names win over synonyms
            if rec.name.lower() == key:
                return rec
        for rec in classes:
            if any(s.lower() == key for s in rec.synonyms):
                return rec
        return None

    def add_synonym(self, class_name: str, synonym: str) -> ClassRecord:
        syn = str(synonym).strip()
        if not syn:
            raise ProjectError("synonym must not be empty")
        with self._lock:
            rec = self.class_by_name(class_name)
            if rec is None:
                raise ProjectError(f"no class named {class_name!r}")
            other = self.class_by_name(syn)
            if other is not None and other.id != rec.id:
                raise ProjectError(f"{syn!r} already names class {other.name!r}")
            if syn.lower() == rec.name.lower() or any(s.lower() == syn.lower() for s in rec.synonyms):
                return rec
            with self._db:
                self._db.execute(
                    "UPDATE classes SET synonyms=? WHERE id=?", (dumps(rec.synonyms + [syn]), rec.id)
                )
            return ClassRecord.from_row(self._query("SELECT * FROM classes WHERE id=?", (rec.id,))[0])

    def set_class_embedding(self, name: str, vector: np.ndarray, model_id: str) -> None:
        """Store a text embedding for a class (created if unknown) as float32 bytes."""
        vec = np.asarray(vector, dtype=np.float32).ravel()
        if vec.size == 0 or not np.all(np.isfinite(vec)):
            raise ProjectError(f"embedding for {name!r} must be a non-empty finite vector")
        with self._lock:
            rec = self.class_by_name(name) or self.add_class(name)
            with self._db:
                self._db.execute(
                    "UPDATE classes SET embedding=?, embedding_model=? WHERE id=?",
                    (vec.tobytes(), str(model_id), rec.id),
                )

    def class_embeddings(self, model_id: str | None = None) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for rec in self.classes():
            if rec.embedding is None or (model_id is not None and rec.embedding_model != model_id):
                continue
            out[rec.name] = rec.embedding
        return out
