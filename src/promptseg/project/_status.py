"""Per-image annotation status and model uncertainty for ``Project`` (the GUI's image list).

Uncertainty is one number per image (e.g. the mean binary entropy of the latest proposal's
class probabilities), with the model version that produced it. It lives in the ``meta`` table
under ``uncertainty:<image id>``, so no schema change is needed.
"""

from __future__ import annotations

import json
import math
import time
from typing import TYPE_CHECKING, Any

from ._part import ProjectPart
from .errors import ProjectError

if TYPE_CHECKING:
    from .records import ImageRecord

__all__ = ["StatusMixin", "STATUSES"]

# Ordered by how far the annotation got; an image's status is the furthest of its labels.
STATUSES = ("unlabelled", "proposed", "corrected", "gold")
_KEY = "uncertainty:"


class StatusMixin(ProjectPart):

    def set_uncertainty(self, image: ImageRecord | str | int, value: float,
                        model_version: int | None = None, disagreement: float | None = None) -> None:
        """Record the model's uncertainty about ``image`` (replaces the previous value) and,
        optionally, how much its experts disagree (0 = same masks, 1 = disjoint)."""
        v = float(value)
        if not math.isfinite(v) or v < 0:
            raise ProjectError(f"uncertainty must be a finite number >= 0, got {value!r}")
        if disagreement is not None and not (math.isfinite(float(disagreement)) and 0 <= float(disagreement) <= 1):
            raise ProjectError(f"disagreement must be a number in [0, 1], got {disagreement!r}")
        rec = self.image(image)
        payload = json.dumps({"value": v, "model_version": model_version, "time": time.time(),
                              "disagreement": None if disagreement is None else float(disagreement)})
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (f"{_KEY}{rec.id}", payload))

    def uncertainties(self) -> dict[int, dict[str, Any]]:
        """image id -> {"value", "model_version", "time"} for images with a recorded uncertainty."""
        out: dict[int, dict[str, Any]] = {}
        for key, value in self._query("SELECT key, value FROM meta WHERE key LIKE ?", (_KEY + "%",)):
            suffix = key[len(_KEY):]
            if suffix.isdigit():
                out[int(suffix)] = json.loads(value)
        return out

    def image_status(self) -> list[dict[str, Any]]:
        """One row per image, in id order: id, name, status (see STATUSES), uncertainty and
        expert disagreement (or None) and the model version that measured them."""
        rows = self._query(
            "SELECT images.id, images.name,"
            " coalesce(max(labels.kind = 'gold'), 0), coalesce(max(labels.kind = 'corrected'), 0),"
            " coalesce(max(labels.kind = 'proposal'), 0)"
            " FROM images LEFT JOIN labels ON labels.image_id = images.id"
            " GROUP BY images.id ORDER BY images.id")
        unc = self.uncertainties()
        out = []
        for image_id, name, gold, corrected, proposal in rows:
            status = "gold" if gold else "corrected" if corrected else "proposed" if proposal else "unlabelled"
            u = unc.get(image_id, {})
            out.append({"id": image_id, "name": name, "status": status, "uncertainty": u.get("value"),
                        "disagreement": u.get("disagreement"), "model_version": u.get("model_version")})
        return out
