"""SQLite schema of a promptseg project and its forward migrations.

The schema version lives in ``PRAGMA user_version``.  ``MIGRATIONS[i]`` upgrades a
database from version ``i`` to ``i + 1``; version 0 means an empty, fresh file.
"""

from __future__ import annotations

import sqlite3
from typing import Callable

from .errors import ProjectError

__all__ = ["SCHEMA_VERSION", "MIGRATIONS", "migrate", "get_version", "connect"]

SCHEMA_VERSION = 3

_V1 = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT
);
CREATE TABLE IF NOT EXISTS images (
    id      INTEGER PRIMARY KEY,
    name    TEXT NOT NULL UNIQUE,
    path    TEXT NOT NULL,
    sha256  TEXT NOT NULL,
    shape   TEXT NOT NULL,
    dtype   TEXT NOT NULL,
    source  TEXT,
    spacing TEXT,
    added   REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS classes (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    color           TEXT NOT NULL,
    synonyms        TEXT NOT NULL DEFAULT '[]',
    embedding       BLOB,
    embedding_model TEXT,
    created         REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS models (
    version INTEGER PRIMARY KEY,
    path    TEXT NOT NULL,
    parent  INTEGER REFERENCES models(version),
    config  TEXT NOT NULL DEFAULT '{}',
    metrics TEXT NOT NULL DEFAULT '{}',
    sha256  TEXT,
    created REAL NOT NULL,
    active  INTEGER NOT NULL DEFAULT 0 CHECK (active IN (0, 1))
);
CREATE TABLE IF NOT EXISTS labels (
    id               INTEGER PRIMARY KEY,
    image_id         INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    version          INTEGER NOT NULL,
    path             TEXT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('proposal', 'corrected', 'gold')),
    classes          TEXT NOT NULL,
    model_version    INTEGER,
    prompt           TEXT,
    dice_vs_proposal REAL,
    edited_fraction  REAL,
    seconds          REAL,
    created          REAL NOT NULL,
    UNIQUE (image_id, version)
);
CREATE INDEX IF NOT EXISTS labels_image ON labels(image_id, kind);
CREATE TABLE IF NOT EXISTS rounds (
    id            INTEGER PRIMARY KEY,
    config        TEXT NOT NULL DEFAULT '{}',
    status        TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'cancelled')),
    metrics       TEXT NOT NULL DEFAULT '{}',
    model_version INTEGER,
    started       REAL NOT NULL,
    finished      REAL
);
"""


def _migrate_0_to_1(conn: sqlite3.Connection) -> None:
    conn.executescript(_V1)


# images.rgb: 1 colour (last axis RGB(A)), 0 gray or volume, NULL unknown (rows from version 1);
# rounds.status gains 'interrupted'. SQLite cannot alter a CHECK, so rounds is rebuilt, all in
# one transaction so a kill mid-way leaves version 1 intact.
_V2 = """
BEGIN;
ALTER TABLE images ADD COLUMN rgb INTEGER CHECK (rgb IN (0, 1));
CREATE TABLE rounds_v2 (
    id            INTEGER PRIMARY KEY,
    config        TEXT NOT NULL DEFAULT '{}',
    status        TEXT NOT NULL
                  CHECK (status IN ('running', 'done', 'failed', 'cancelled', 'interrupted')),
    metrics       TEXT NOT NULL DEFAULT '{}',
    model_version INTEGER,
    started       REAL NOT NULL,
    finished      REAL
);
INSERT INTO rounds_v2 SELECT id, config, status, metrics, model_version, started, finished FROM rounds;
DROP TABLE rounds;
ALTER TABLE rounds_v2 RENAME TO rounds;
PRAGMA user_version = 2;
COMMIT;
"""


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    conn.executescript(_V2)


# label_sources: where the pixels of each stored label came from, per class and source (text
# proposal, box, click, exemplar, painted by hand), so effort and accuracy can be reported per
# source. Labels from version 2 get their one known source: a proposal is the text model's;
# a corrected label started from one (its painted share is unknown, so ``pixels`` is NULL).
_V3 = """
BEGIN;
CREATE TABLE label_sources (
    id       INTEGER PRIMARY KEY,
    label_id INTEGER NOT NULL REFERENCES labels(id) ON DELETE CASCADE,
    class    TEXT NOT NULL,
    source   TEXT NOT NULL CHECK (source IN ('text', 'box', 'click', 'exemplar', 'painted')),
    pixels   INTEGER,
    objects  INTEGER NOT NULL DEFAULT 0,
    score    REAL,
    UNIQUE (label_id, class, source)
);
CREATE INDEX label_sources_source ON label_sources(source);
INSERT INTO label_sources(label_id, class, source, pixels, objects)
    SELECT labels.id, json_each.value, 'text', NULL, 0 FROM labels, json_each(labels.classes)
    WHERE labels.kind IN ('proposal', 'corrected');
PRAGMA user_version = 3;
COMMIT;
"""


def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    conn.executescript(_V3)


# Index i upgrades version i -> i + 1; append new steps, never edit old ones.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_0_to_1, _migrate_1_to_2, _migrate_2_to_3]
assert len(MIGRATIONS) == SCHEMA_VERSION


def get_version(conn: sqlite3.Connection) -> int:
    """Return the schema version stored in ``PRAGMA user_version``."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Bring ``conn`` up to ``SCHEMA_VERSION``; refuse databases from newer code."""
    current = get_version(conn)
    if current > SCHEMA_VERSION:
        raise ProjectError(
            f"project was written by a newer promptseg (schema {current} > {SCHEMA_VERSION}); "
            "upgrade promptseg"
        )
    for step in range(current, SCHEMA_VERSION):
        # executescript commits implicitly, so each step is its own unit; user_version
        # is bumped right after, and steps use IF NOT EXISTS so a re-run is harmless.
        MIGRATIONS[step](conn)
        conn.execute(f"PRAGMA user_version = {step + 1}")
        conn.commit()
    return SCHEMA_VERSION


def connect(db_path: str) -> sqlite3.Connection:
    """Open the project database with the pragmas every connection must use."""
    conn = sqlite3.connect(db_path, timeout=30.0, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn
