"""The image's proposal Labels layer, made before its first mask, in short steps.

Adding a Labels layer to napari is one long call on the GUI thread (the layer, its vispy
visual and overlays, its controls, the selection), too long for a viewer that must never
freeze. ``ProposalLayers.prepare`` makes the proposal layer of the image on screen ahead of
time, empty and hidden, one part per event-loop turn while the model loads or the image is
embedded: the layer with its overlays held back, then its insertion into the layer list
(not selected, with napari's canvas visual and layer controls held back), then the visual,
the controls and each overlay. ``show_labels`` later only sets its data, colours and
class names, shows it and selects it.
"""
from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from types import SimpleNamespace

import numpy as np

from .dock_state import DockState
from .layers import EMPTY_KEY, PROPOSAL_OPACITY, finish_pending, next_turn, proposal_layer_name, set_pending


class ProposalLayers:
    def __init__(self, state: DockState) -> None:
        self.state = state
        self._dock = None                # set: the steps wait while it is on screen, not drawn yet
        self._held = False
        self._steps: Iterator[None] | None = None
        # a layer selected before it is whole (in the layer list, say) is finished first: this
        # listener, connected after napari's, runs before them
        state.viewer.layers.selection.events.active.connect(self._on_active)
        # so is one about to be removed (by the user, or as the window closes): napari's canvas
        # removes a layer's visual and would fail on one not made yet
        state.viewer.layers.events.removing.connect(self._on_removing)

    def _on_active(self, event) -> None:
        if event.value is not None:
            finish_pending(event.value)

    def _on_removing(self, event) -> None:
        finish_pending(self.state.viewer.layers[event.index])

    def finish(self) -> None:
        """Run the steps left at once."""
        if self._steps is None or getattr(self._steps, "gi_running", False):
            return                # nothing left, or called from inside a step
        steps, self._steps = self._steps, None
        for _ in steps:
            pass

    @property
    def busy(self) -> bool:
        return self._steps is not None

    def prepare(self, *_) -> None:
        """Start making the proposal layer of the 2-D image on screen, if it has none."""
        layer = self.state.image_layer()
        if self._steps is not None or layer is None or np.ndim(layer.data) - (1 if layer.rgb else 0) != 2:
            return
        if proposal_layer_name(layer.name) in self.state.viewer.layers:
            return
        self._steps = self._make(layer)
        next_turn(self._next)

    def wait_for_drawing(self, dock) -> None:
        """Hold the steps while ``dock`` is on screen and has not drawn itself yet (``resume``
        says it has), so they do not add to the dock's own first layout and paint."""
        self._dock = dock

    def resume(self) -> None:
        """The dock has drawn itself: go on with the steps held back."""
        self._dock = None
        if self._held:
            self._held = False
            next_turn(self._next)

    def _holding(self) -> bool:
        if self._dock is None:
            return False
        try:
            return self._dock.isVisible()
        except RuntimeError:             # the dock is gone: nothing more to make
            return True

    def _next(self) -> None:
        if self._steps is None:
            return
        if self._holding():
            self._held = True
            return
        try:
            with _canvas_not_redrawn(self.state.viewer):
                next(self._steps)
        except StopIteration:
            self._steps = None
            self.prepare()       # the image on screen may have changed meanwhile
            return
        except BaseException:
            self._steps = None   # not busy for ever: a Propose then adds the layer itself
            raise
        next_turn(self._next)

    def _make(self, image_layer) -> Iterator[None]:
        from napari.layers import Labels

        # the viewer itself, not napari's public-only proxy given to plugins: the steps below use
        # napari's private listeners, which the proxy would wrap apart from the ones connected
        viewer = getattr(self.state.viewer, "__wrapped__", self.state.viewer)
        name = proposal_layer_name(image_layer.name)
        shape = np.shape(image_layer.data)[:2]
        labels = Labels(np.zeros(shape, np.int32), name=name, visible=False, opacity=PROPOSAL_OPACITY,
                        scale=image_layer.scale[-2:],
                        metadata={"promptseg": True, "image": image_layer.name, "classes": [], EMPTY_KEY: True})
        overlays = getattr(labels, "_overlays", None)
        held = {key: overlays.pop(key) for key in list(overlays)} if hasattr(overlays, "pop") else {}
        yield
        if name in viewer.layers or image_layer not in viewer.layers:
            return                # a proposal arrived first, or the image is gone
        # weakly held while the steps wait: a pending turn must not keep a closed window's QtViewer
        deferred = [weakref.WeakMethod(f) for f in _append_held_back(viewer.layers, labels, _insert_listeners(viewer))]
        set_pending(labels, self.finish)
        try:
            yield from self._finish_parts(viewer, labels, deferred, held, overlays)
        finally:
            set_pending(labels, None)

    @staticmethod
    def _finish_parts(viewer, labels, deferred: list, held: dict, overlays) -> Iterator[None]:
        """The inserted layer's canvas visual and controls, then its overlays: one a turn."""
        for ref in deferred:
            yield
            listener = ref()
            if listener is None or labels not in viewer.layers:
                return
            split = _controls_in_turns(listener.__self__, viewer, labels) if listener.__name__ == "_add" else None
            if split is None:
                listener(SimpleNamespace(value=labels, index=viewer.layers.index(labels)))
            else:
                yield from split
        for key, overlay in held.items():         # the brush and polygon overlays' visuals, one a turn
            yield
            if labels not in viewer.layers:
                return
            overlays[key] = overlay


def _controls_in_turns(container, viewer, labels) -> Iterator[None] | None:
    """napari's layer controls for the layer (``QtLayerControlsContainer._add``) in three turns:
    made; added to their panel (napari's style sheet reaches each of their widgets) with the
    panel's painting held; the panel painted. None where this napari differs: ``_add`` then
    runs as one call."""
    try:
        from napari._qt.layer_controls.qt_layer_controls_container import create_qt_layer_controls
        from napari.settings import get_settings

        dynamic = get_settings().experimental.dynamic_layer_controls
    except (ImportError, AttributeError):
        return None
    if dynamic or not isinstance(getattr(container, "widgets", None), dict):
        return None

    def steps() -> Iterator[None]:
        controls = create_qt_layer_controls(labels)
        controls.ndisplay = viewer.dims.ndisplay
        yield
        container.setUpdatesEnabled(False)
        try:
            container.addWidget(controls)
            container.widgets[labels] = controls
            yield
        finally:
            container.setUpdatesEnabled(True)      # one repaint of the panel, on a turn of its own
    return steps()


@contextmanager
def _canvas_not_redrawn(viewer) -> Iterator[None]:
    """The canvas is not redrawn for what the block does: a hidden layer's parts change nothing
    on screen, and a software-rendered redraw of the window costs as much as the part itself.
    (vispy's canvas asks Qt for one redraw at a time; marked as asked, it asks for none.)"""
    qt_viewer = getattr(getattr(viewer, "window", None), "_qt_viewer", None)
    canvas = getattr(getattr(qt_viewer, "canvas", None), "_scene_canvas", None)
    pending = getattr(canvas, "_update_pending", None)
    if not isinstance(pending, bool) or pending:
        yield                                   # another napari, or a redraw is coming anyway
        return
    canvas._update_pending = True
    try:
        yield
    finally:
        canvas._update_pending = False


def _append_held_back(layers, labels, listeners: list) -> list:
    """Append the layer, unselected, with the given insertion listeners held back; returns them."""
    activate = getattr(layers, "_activate_on_insert", None)
    if activate is not None:
        layers._activate_on_insert = False        # selecting it relays out the layer controls
    try:
        with ExitStack() as stack:
            for listener in listeners:
                stack.enter_context(layers.events.inserted.blocker(listener))
            layers.append(labels)
    finally:
        if activate is not None:
            layers._activate_on_insert = activate
    return listeners


def _insert_listeners(viewer) -> list:
    """napari's two slow listeners to a layer's insertion, run a turn each after it: the canvas's
    visual (QtViewer._on_add_layer_change) and the layer controls (QtLayerControlsContainer._add).
    Empty where this napari names them otherwise: the insertion then runs them itself."""
    qt_viewer = getattr(getattr(viewer, "window", None), "_qt_viewer", None)
    controls = getattr(qt_viewer, "controls", None)
    found = [getattr(qt_viewer, "_on_add_layer_change", None), getattr(controls, "_add", None)]
    connected = [(cb[0](), cb[1]) for cb in viewer.layers.events.inserted.callbacks if isinstance(cb, tuple)]
    return [f for f in found if f is not None and any(obj is f.__self__ and name == f.__name__ for obj, name in connected)]
