"""Keyboard shortcuts of the PromptSeg dock, registered as napari actions.

Shift+letter: napari's layers already use the plain letters (P paints on a Labels layer,
A selects all points, N/R/F have layer meanings too) and Ctrl+T transposes axes, so the
dock's actions take the Shift variants, which no Labels layer binds (napari's own Shift+V
stays).

Each action is registered with napari's action manager on the viewer's keymap, so it is
listed (and can be rebound) in napari's Preferences > Shortcuts, under the viewer's key
bindings; a shortcut the user chose there wins over the default below. The action runs on
the dock of the viewer whose canvas has the focus.
"""
from __future__ import annotations

import weakref

PACKAGE = "napari-promptseg"

# (default key, action, button label, what it does)
SHORTCUTS = (
    ("Shift-P", "propose", "Propose", "Propose the typed classes on the image on screen"),
    ("Shift-C", "commit", "Commit object", "Paint the box or click object into the proposal as an instance of the class"),
    ("Shift-X", "candidate", "Next candidate", "Show the click's next candidate mask"),
    ("Shift-M", "more", "More like this", "Propose further objects like the class's masks in this image"),
    ("Shift-A", "accept", "Accept", "Accept the corrected labels into the project"),
    ("Shift-N", "next", "Next image", "Open the project's suggested next image"),
    ("Shift-R", "retrain", "Retrain", "Retrain the model on the accepted labels"),
)

_DOCKS: dict[int, weakref.ref] = {}      # id(viewer) -> the dock on that viewer


def _key(viewer) -> int:
    """The viewer's identity (napari hands plugins a proxy of the viewer, keys get the viewer)."""
    return id(getattr(viewer, "__wrapped__", viewer))


def action_name(action: str) -> str:
    return f"{PACKAGE}:{action}"


def actions(widget) -> dict:
    panel = widget.project_panel
    spatial = widget.refine_panel
    return {"propose": widget.propose, "commit": spatial.commit, "candidate": spatial.next_candidate,
            "more": spatial.more_like_this, "accept": panel.accept,
            "next": panel.images.next_image, "retrain": panel.retrain}


def buttons(widget) -> dict:
    """The button each shortcut stands for."""
    panel = widget.project_panel
    spatial = widget.refine_panel
    return {"propose": widget.propose_btn, "commit": spatial.commit_btn, "candidate": spatial.cycle_btn,
            "more": spatial.more_btn, "accept": panel.accept_btn, "next": panel.images.next_btn,
            "retrain": panel.retrain_btn}


def key_of(action: str) -> str:
    """The key bound to ``action`` now (the user's choice in napari's preferences, else ours)."""
    from napari.utils.action_manager import action_manager

    bound = action_manager._shortcuts.get(action_name(action))
    default = next(k for k, a, _, _ in SHORTCUTS if a == action)
    return str(bound[0]) if bound else default


def _runner(action: str):
    def run(viewer) -> None:
        ref = _DOCKS.get(_key(viewer))
        dock = ref() if ref is not None else None
        if dock is not None:
            actions(dock)[action]()
    return run


def register() -> None:
    """Register the dock's actions with napari (once per process; again is harmless)."""
    from napari.components import ViewerModel
    from napari.settings import get_settings
    from napari.utils.action_manager import action_manager

    chosen = get_settings().shortcuts.shortcuts
    for key, action, _, description in SHORTCUTS:
        name = action_name(action)
        first = name not in action_manager._actions
        action_manager.register_action(name, _runner(action), f"PromptSeg: {description}", ViewerModel)
        if first and not action_manager._shortcuts.get(name):
            for k in chosen.get(name) or [key]:
                action_manager.bind_shortcut(name, k)


def bind(widget) -> None:
    """Route the registered actions on ``widget.viewer`` to ``widget``; name the keys on its buttons."""
    register()
    _DOCKS[_key(widget.viewer)] = weakref.ref(widget)
    btns = buttons(widget)
    for _, action, label, description in SHORTCUTS:
        button = btns[action]
        key = key_of(action).replace("-", "+")
        tip = button.toolTip() or description
        if key not in tip:
            button.setToolTip(f"{tip} ({key})")


def help_text() -> str:
    return "Keys: " + " · ".join(f"{key_of(a).replace('-', '+')} {label.lower()}" for _, a, label, _ in SHORTCUTS)
