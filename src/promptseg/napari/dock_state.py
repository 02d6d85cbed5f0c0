"""What the dock's panels share, as one Qt object: the viewer, the annotation session, the image
and the proposal on screen, the device and precision choice, and signals when any of them change.

Panels get this object and connect to its signals; none reads another panel's members. The
dock (widget.py) owns the controls and keeps this object in step with them.
"""
from __future__ import annotations

import numpy as np
from qtpy.QtCore import QObject, Signal

from .state import Proposal


class DockState(QObject):
    # (Proposal or None): a proposal appeared on screen, was refined, replaced or dropped
    proposal_changed = Signal(object)
    # (image layer name, "" for none): the image the dock works on changed
    image_changed = Signal(str)
    # (model folder or None, version or None): another model version is in use
    model_changed = Signal(object, object)
    # the model is being loaded in a worker thread; model_ready / model_failed follow
    model_loading = Signal()
    model_ready = Signal()
    model_failed = Signal(str)
    # (text, level "info"/"warning"/"error", cause or None): for the dock's main message line
    message = Signal(str, str, object)
    # (Proposal, uncertainty, image layer, disagreement or None): a project stores it
    proposed = Signal(object, float, object, object)
    # (mapped prompts): new class names and synonyms for a project to register
    prompts_mapped = Signal(object)
    # (text): the per-class presence scores of the proposal on screen, for display
    presence_changed = Signal(str)
    # (text): progress of the background proposer, for the project's image list
    batch_note = Signal(str)
    # (summary text): the background proposer finished or stopped
    batch_finished = Signal(str)
    # the project's image statuses changed (a proposal was stored in the background)
    images_changed = Signal()

    def __init__(self, viewer, session) -> None:
        super().__init__()
        self.viewer = viewer
        self.session = session          # workflow/session.py: the project, model and Predictor
        self._current: Proposal | None = None
        self.image_name = ""            # the image layer chosen in the dock
        self.device = "auto"            # the device chosen in the dock ("auto", "cpu", ...)
        self.fast = False               # the reduced precision of Fast mode, where the device has one
        self.prompt_text = ""           # the class prompt as typed
        self.tau = 0.5                  # the threshold that merges probabilities into labels
        self.exemplar_limit = 4         # accepted labels per class the exemplar expert may use
        self.proposing = False          # a Propose is running (other work waits for it)
        self.loaded = False             # the model of the session has been loaded once

    # -- the proposal on screen --------------------------------------------------------------
    @property
    def current(self) -> Proposal | None:
        return self._current

    @current.setter
    def current(self, proposal: Proposal | None) -> None:
        changed = proposal is not self._current
        self._current = proposal
        if changed:
            self.proposal_changed.emit(proposal)

    def set_image(self, name: str) -> None:
        if name != self.image_name:
            self.image_name = name
            self.image_changed.emit(name)

    # -- messages ---------------------------------------------------------------------------
    def say(self, text: str, level: str = "info", cause: str | None = None) -> None:
        self.message.emit(text, level, cause)

    def warn(self, text: str, cause: str | None = None) -> None:
        self.message.emit(text, "warning", cause)

    def clear(self, cause: str) -> None:
        """Clear the message line if its message was raised for ``cause`` (empty text)."""
        self.message.emit("", "info", cause)

    # -- the model --------------------------------------------------------------------------
    def precisions(self, device: str | None = None) -> tuple[str, str]:
        """(encoder, decoder) precision on ``device`` (default: the dock's); safe from any thread."""
        from ..inference.predictor import fast_precisions

        device = device or self.device
        try:
            fast = fast_precisions(device) if self.fast else None
        except ValueError:          # a device that is not here: loading the predictor says so
            fast = None
        return fast or ("float32", "float32")

    def predictor(self, device: str | None = None):
        """The session's Predictor on ``device`` (default: the dock's) at the chosen precisions,
        loaded on first use (call from a worker thread holding ``session.lock``)."""
        device = device or self.device
        return self.session.predictor(device, self.precisions(device))

    @property
    def model_version(self) -> int | None:
        return self.session.model_version

    # -- images and labels on screen ------------------------------------------------------------
    def image_layer(self):
        """The chosen image layer, or None."""
        name = self.image_name
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    def image_for(self, layer) -> np.ndarray:
        """The layer's image, or its slice on screen for a 3-D volume."""
        data = np.asarray(layer.data)
        z = self.slice_index_of(layer)
        return data if z is None else data[z]

    def slice_index_of(self, layer) -> int | None:
        """The slice on screen (axis 0) of a 3-D volume layer; None for a 2-D image."""
        if np.ndim(layer.data) == 3 and not layer.rgb:
            return min(max(int(self.viewer.dims.current_step[0]), 0), layer.data.shape[0] - 1)
        return None

    def class_colors(self) -> dict[str, str]:
        """The project's class colours by name (empty without a project)."""
        project = self.session.project
        return {c.name: c.color for c in project.classes()} if project is not None else {}

    def edited_labels(self) -> np.ndarray | None:
        """The current proposal layer's data if the annotator changed it, else None."""
        p = self.current
        if p is None or p.layer not in self.viewer.layers:
            return None
        data = np.asarray(self.viewer.layers[p.layer].data)
        return None if np.array_equal(data, p.labels()) else data

    def unsaved_edits(self) -> np.ndarray | None:
        """Edits of the current proposal that are neither the proposal nor already accepted."""
        data = self.edited_labels()
        acc = self.current.accepted if self.current is not None else None
        if data is None or (acc is not None and np.array_equal(data, acc)):
            return None
        return data

    def replace_if_untouched(self, image: str, result, model_version: int | None) -> bool:
        """A background proposal for the image on screen replaces the layer unless the
        annotator has edited it (edits always win)."""
        from ..inference.vocabulary import presence_text

        p = self.current
        if p is None or p.image != image or p.layer not in self.viewer.layers or p.probs is None:
            return False
        if self.edited_labels() is not None or result.probs.shape != p.probs.shape:
            return False
        p.probs, p.presence, p.model_version = result.probs, result.presence, model_version
        p.prompts = list(result.prompts)
        p.saved_proposal = p.labels()
        self.viewer.layers[p.layer].data = p.saved_proposal
        self.presence_changed.emit(presence_text(result))
        self.proposal_changed.emit(p)
        return True
