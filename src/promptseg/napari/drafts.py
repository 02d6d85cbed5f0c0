"""Unsaved edits of a proposal, kept as drafts in ``PROJECT/drafts/<image>.npz`` (no Qt here).

Written atomically (temp file, fsync, rename) whenever the annotator leaves an edited,
un-accepted proposal (switching images, closing napari); restored when the image is opened
again; deleted on Accept. Without a project the edits are still kept: as a label TIFF that
napari opens, in ``$PROMPTSEG_DRAFTS`` (default ``~/.local/share/promptseg/unsaved``).
"""
from __future__ import annotations

import io
import json
import os
import re
import time
from pathlib import Path

import numpy as np

from ..project import atomic_write_bytes, atomic_write_tiff
from .state import Proposal


def draft_path(root: Path, image: str) -> Path:
    return Path(root) / "drafts" / f"{image}.npz"


def save_draft(root: Path, p: Proposal, edited: np.ndarray, tau: float) -> Path:
    meta = {"image": p.image, "prompts": p.prompts, "prompt": p.prompt, "model_version": p.model_version,
            "seconds": max(0.0, time.time() - p.shown_at),
            "proposal_stored": p.saved_proposal is not None and bool(np.array_equal(p.saved_proposal, p.labels(tau)))}
    buf = io.BytesIO()
    np.savez_compressed(buf, edited=np.asarray(edited, np.int32), proposal=p.labels(tau),
                        meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    path = draft_path(root, p.image)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return path


def load_draft(root: Path, image: str, image_array: np.ndarray, layer: str) -> tuple[Proposal, np.ndarray] | None:
    """(proposal state, edited label map) of a saved draft, or None."""
    path = draft_path(root, image)
    if not path.is_file():
        return None
    with np.load(path) as z:
        edited, proposal = z["edited"], z["proposal"]
        meta = json.loads(bytes(z["meta"]).decode())
    p = Proposal(layer=layer, image=image, prompts=list(meta["prompts"]), image_array=image_array,
                 fixed=proposal, model_version=meta.get("model_version"), prompt=meta.get("prompt", ""),
                 shown_at=time.time() - float(meta.get("seconds", 0.0)),
                 saved_proposal=proposal if meta.get("proposal_stored") else None)
    return p, edited


def delete_draft(root: Path, image: str) -> None:
    draft_path(root, image).unlink(missing_ok=True)


def unsaved_folder() -> Path:
    default = Path.home() / ".local" / "share" / "promptseg" / "unsaved"
    return Path(os.environ.get("PROMPTSEG_DRAFTS") or default)


def save_unsaved(p: Proposal, edited: np.ndarray) -> Path:
    """Edits made without a project: ``<folder>/<image>-<time>.tif`` (labels, classes in the name)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", p.image).strip("_") or "image"
    path = unsaved_folder() / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}.tif"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_tiff(path, np.asarray(edited).astype(np.uint16))
    atomic_write_bytes(path.with_suffix(".json"), json.dumps(
        {"image": p.image, "classes": p.prompts, "prompt": p.prompt, "model_version": p.model_version}).encode())
    return path
