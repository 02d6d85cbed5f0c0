"""Glue between predictions and napari Labels layers: class names, stable colours."""
from __future__ import annotations

import hashlib
import weakref
from collections.abc import Generator
from typing import Any, Callable

import numpy as np
from napari.utils.colormaps import DirectLabelColormap
from qtpy.QtCore import QTimer

# Distinct colours; a class keeps its colour across images because it is picked by name.
PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c",
           "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8", "#800000", "#aaffc3", "#808000",
           "#ffd8b1", "#000075", "#ffe119", "#808080"]


def class_color(name: str, known: dict[str, str] | None = None) -> str:
    if known and name in known:
        return known[name]
    h = int(hashlib.sha1(name.lower().encode()).hexdigest(), 16)
    return PALETTE[h % len(PALETTE)]


def colormap_for(classes: list[str], known: dict[str, str] | None = None) -> DirectLabelColormap:
    colors: dict[Any, Any] = {None: "transparent", 0: "transparent"}
    for i, c in enumerate(classes):
        colors[i + 1] = class_color(c, known)
    return DirectLabelColormap(color_dict=colors)


def features_for(classes: list[str], presence: np.ndarray | None = None) -> dict[str, list]:
    feats: dict[str, list] = {"index": list(range(len(classes) + 1)), "class": ["background", *classes]}
    if presence is not None:
        feats["presence"] = [float("nan"), *[round(float(p), 3) for p in presence]]
    return feats


PROPOSAL_OPACITY = 0.55
EMPTY_KEY = "promptseg_empty"   # metadata of a proposal layer made ahead of its first mask (proposal_layer.py)


def proposal_layer_name(image: str) -> str:
    return f"{image} promptseg"


# Layers made ahead whose last parts (canvas visual, controls, overlays) are still to come a turn
# at a time (proposal_layer.py), each with a weak reference to the method that makes them all at
# once (a strong one would keep the dock, and through it the viewer and the layer, alive).
_PENDING: "weakref.WeakKeyDictionary[Any, weakref.WeakMethod]" = weakref.WeakKeyDictionary()


def set_pending(layer, finish: Callable[[], None] | None) -> None:
    """Record (or, with None, forget) how to finish a layer that is not whole yet; ``finish`` is
    a bound method."""
    if finish is None:
        _PENDING.pop(layer, None)
    else:
        _PENDING[layer] = weakref.WeakMethod(finish)


def finish_pending(layer) -> None:
    """Make a layer made ahead whole now: it is about to be shown or selected."""
    ref = _PENDING.pop(getattr(layer, "__wrapped__", layer), None)   # napari may hand plugins a proxy
    finish = ref() if ref is not None else None
    if finish is not None:
        finish()


def show_labels_steps(viewer, name: str, labels: np.ndarray, classes: list[str], presence=None,
                      scale=None, known_colors: dict[str, str] | None = None,
                      metadata: dict | None = None) -> Generator[None, None, Any]:
    """Create or update the one proposal Labels layer of an image, a part per step; returns the
    layer. A layer made ahead gets its data and colours while hidden, then is shown, then
    selected: each of these makes napari slice, draw or lay out its controls."""
    meta = {"classes": list(classes), "promptseg": True, **(metadata or {})}
    if name not in viewer.layers:
        kw = {"scale": scale} if scale is not None else {}
        return viewer.add_labels(labels, name=name, features=features_for(classes, presence),
                                 colormap=colormap_for(classes, known_colors), metadata=meta,
                                 opacity=PROPOSAL_OPACITY, **kw)
    layer = viewer.layers[name]
    finish_pending(layer)          # napari selects and draws only whole layers
    layer.data = labels
    layer.features = features_for(classes, presence)
    layer.colormap = colormap_for(classes, known_colors)
    layer.metadata.update(meta)
    if layer.metadata.pop(EMPTY_KEY, False):    # made ahead, hidden: shown and selected as if just added
        yield
        if name in viewer.layers:
            layer.visible = True
        yield
        if name in viewer.layers:
            viewer.layers.selection.active = layer
    return layer


def show_labels(viewer, name: str, labels: np.ndarray, classes: list[str], presence=None,
                scale=None, known_colors: dict[str, str] | None = None, metadata: dict | None = None):
    """Create or update the one proposal Labels layer of an image, all at once."""
    steps = show_labels_steps(viewer, name, labels, classes, presence, scale, known_colors, metadata)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def next_turn(call: Callable[[], None]) -> None:
    """Run ``call`` on a later turn of the event loop, after the timers already due. A zero
    delay would post it as an event, and Qt delivers posted events back to back before any
    timer fires: steps chained that way would run as one long turn."""
    QTimer.singleShot(1, call)


def run_in_turns(steps: Generator[None, None, Any], then: Callable[[Any], None]) -> None:
    """Run a step per event-loop turn, then ``then`` with what the steps returned."""
    try:
        next(steps)
    except StopIteration as done:
        then(done.value)
        return
    except Exception:
        then(None)                 # whoever waits is told, then the error shows as any would
        raise
    next_turn(lambda: run_in_turns(steps, then))
