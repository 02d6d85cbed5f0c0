"""Keyboard shortcuts of the PromptSeg dock, bound on the napari viewer.

Shift+letter: napari's layers already use the plain letters (P paints on a Labels layer,
A selects all points, N/R/F have layer meanings too) and Ctrl+T transposes axes, so the
dock's actions take the Shift variants, which no Labels layer binds (napari's own Shift+V
stays).
"""
from __future__ import annotations

SHORTCUTS = (
    ("Shift-P", "propose", "Propose"),
    ("Shift-C", "commit", "Commit object"),
    ("Shift-X", "candidate", "Next candidate mask"),
    ("Shift-M", "more", "More like this"),
    ("Shift-A", "accept", "Accept"),
    ("Shift-N", "next", "Next image"),
    ("Shift-R", "retrain", "Retrain"),
)


def actions(widget) -> dict:
    panel = widget.project_panel
    spatial = widget.refine_panel
    return {"propose": widget.propose, "commit": spatial.commit, "candidate": spatial.next_candidate,
            "more": spatial.more_like_this, "accept": panel.accept,
            "next": panel.images.next_image, "retrain": panel.retrain}


def bind(widget) -> None:
    acts = actions(widget)
    for key, action, _ in SHORTCUTS:
        fn = acts[action]
        widget.viewer.bind_key(key, lambda _viewer, fn=fn: fn(), overwrite=True)


def help_text() -> str:
    return "Keys: " + " · ".join(f"{k.replace('-', '+')} {label.lower()}" for k, _, label in SHORTCUTS)
