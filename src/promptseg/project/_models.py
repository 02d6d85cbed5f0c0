"""Model versions, training rounds, embedding cache paths and summary for ``Project``."""

from __future__ import annotations

import errno
import secrets
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

from ..fsutil import file_sha256
from .atomic import atomic_replace_dir
from ._part import ProjectPart
from .errors import ProjectError
from .paths import check_space, checked_path, space_error
from .records import LABEL_KINDS, ROUND_STATUSES, ModelRecord, RoundRecord, dumps

__all__ = ["ModelsMixin"]


class ModelsMixin(ProjectPart):

    # ------------------------------------------------------------------- models
    def register_model(
        self,
        src_dir: str | Path,
        *,
        config: dict[str, Any],
        metrics: dict[str, Any] | None = None,
        parent: int | None = None,
        activate: bool = True,
    ) -> ModelRecord:
        """Copy a finished model folder into models/<next version>/ and record it."""
        src = Path(src_dir)
        if not src.is_dir():
            raise ProjectError(f"model folder not found: {src}")
        config_json, metrics_json = dumps(dict(config)), dumps(dict(metrics or {}))
        models_root = checked_path(self.root, "models", "the models folder")
        models_root.mkdir(exist_ok=True)
        size = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
        check_space(self.root, size + (1 << 20))
        with self._lock:
            if parent is not None and not self._query("SELECT 1 FROM models WHERE version=?", (parent,)):
                raise ProjectError(f"parent model version {parent} does not exist")
            db_max = self._query("SELECT coalesce(max(version), 0) FROM models")[0][0]
            # Skip numbers of folders left by a crash before their row was committed.
            disk_max = max((int(p.name) for p in models_root.iterdir() if p.name.isdigit()), default=0)
            version = max(int(db_max), disk_max) + 1
            tmp = models_root / f".tmp-{version}-{secrets.token_hex(4)}"
            try:
                shutil.copytree(src, tmp)
                weights = tmp / "model.safetensors"
                sha = file_sha256(weights) if weights.is_file() else None
                while True:
                    try:
                        final = atomic_replace_dir(tmp, models_root / str(version))
                        break
                    except OSError as exc:
                        # Another process took this number: the target exists (EEXIST) or, when
                        # it appeared between the check and the rename, is not empty (ENOTEMPTY).
                        if not isinstance(exc, FileExistsError) and exc.errno not in (errno.EEXIST,
                                                                                    errno.ENOTEMPTY):
                            raise
                        version += 1
                with self._db:
                    if activate:
                        self._db.execute("UPDATE models SET active=0 WHERE active=1")
                    self._db.execute(
                        "INSERT INTO models(version, path, parent, config, metrics, sha256, created, active)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (version, final.relative_to(self.root).as_posix(), parent, config_json,
                         metrics_json, sha, time.time(), int(activate)),
                    )
            except (OSError, sqlite3.OperationalError) as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                full = space_error(exc, self.root, size)
                if full is None:
                    raise
                raise full from None
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            return self._model(version)

    def _model(self, version: int) -> ModelRecord:
        rows = self._query("SELECT * FROM models WHERE version=?", (int(version),))
        if not rows:
            raise ProjectError(f"no model version {version}")
        return ModelRecord.from_row(rows[0], self.root)

    def models(self) -> list[ModelRecord]:
        rows = self._query("SELECT * FROM models ORDER BY version")
        return [ModelRecord.from_row(r, self.root) for r in rows]

    def active_model(self) -> ModelRecord | None:
        rows = self._query("SELECT * FROM models WHERE active=1 ORDER BY version DESC LIMIT 1")
        return ModelRecord.from_row(rows[0], self.root) if rows else None

    def set_active_model(self, version: int) -> ModelRecord:
        """Make ``version`` the only active model (e.g. to roll back a bad retrain)."""
        with self._lock:
            self._model(version)  # raises for unknown versions before touching anything
            with self._db:
                self._db.execute("UPDATE models SET active = (version = ?)", (int(version),))
            return self._model(version)

    def model_dir(self, version: int) -> Path:
        return self._model(version).path

    @property
    def embeddings_dir(self) -> Path:
        """The project's embedding cache (inference/embeddings.EmbeddingCache): rounds write it,
        Predictors read it, both keyed by fsutil.array_sha256 of the image."""
        return self.root / "embeddings"

    # ------------------------------------------------------------------- rounds
    def start_round(self, config: dict[str, Any]) -> int:
        """Record a new running round (the caller holds the project's RoundLock)."""
        with self._lock, self._db:
            cur = self._db.execute(
                "INSERT INTO rounds(config, status, metrics, started) VALUES (?, 'running', '{}', ?)",
                (dumps(dict(config)), time.time()),
            )
            return int(cur.lastrowid)  # type: ignore[arg-type]

    def resume_round(self, round_id: int) -> None:
        """Mark an interrupted or cancelled round running again (the caller holds the RoundLock)."""
        with self._lock, self._db:
            self._db.execute("UPDATE rounds SET status='running', finished=NULL WHERE id=?", (int(round_id),))

    def fail_running_rounds(self, message: str) -> None:
        """Mark every ``running`` round failed (its process, the RoundLock holder, hit an error)."""
        with self._lock, self._db:
            self._db.execute("UPDATE rounds SET status='failed', metrics=?, finished=? WHERE status='running'",
                             (dumps({"error": message[:2000]}), time.time()))

    def finish_round(
        self,
        round_id: int,
        status: str,
        metrics: dict[str, Any] | None = None,
        model_version: int | None = None,
    ) -> RoundRecord:
        if status not in ROUND_STATUSES or status == "running":
            raise ProjectError(f"invalid final round status {status!r}; expected one of {ROUND_STATUSES[1:]}")
        with self._lock:
            if not self._query("SELECT 1 FROM rounds WHERE id=?", (round_id,)):
                raise ProjectError(f"no training round with id {round_id}")
            if model_version is not None:
                self._model(model_version)
            with self._db:
                self._db.execute(
                    "UPDATE rounds SET status=?, metrics=?, model_version=?, finished=? WHERE id=?",
                    (status, dumps(dict(metrics or {})), model_version, time.time(), round_id),
                )
            return RoundRecord.from_row(self._query("SELECT * FROM rounds WHERE id=?", (round_id,))[0])

    def rounds(self) -> list[RoundRecord]:
        return [RoundRecord.from_row(r) for r in self._query("SELECT * FROM rounds ORDER BY id")]

    # ------------------------------------------------------------------ summary
    def summary(self) -> dict[str, Any]:
        """Counts for status bars and the CLI."""
        def count(sql: str) -> int:
            return int(self._query(sql)[0][0])

        by_kind = {k: 0 for k in LABEL_KINDS}
        for row in self._query("SELECT kind, count(*) FROM labels GROUP BY kind"):
            by_kind[row[0]] = int(row[1])
        active = self.active_model()
        return {
            "name": getattr(self, "name", self.root.name),
            "root": str(self.root),
            "images": count("SELECT count(*) FROM images"),
            "labelled": count(
                "SELECT count(DISTINCT image_id) FROM labels WHERE kind IN ('gold', 'corrected')"
            ),
            "classes": count("SELECT count(*) FROM classes"),
            "models": count("SELECT count(*) FROM models"),
            "active_model": active.version if active else None,
            "labels_by_kind": by_kind,
            "rounds": count("SELECT count(*) FROM rounds"),
            "rounds_by_status": {r[0]: int(r[1]) for r in self._query(
                "SELECT status, count(*) FROM rounds GROUP BY status ORDER BY status")},
        }
