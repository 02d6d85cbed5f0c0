"""What the project, image-list and refine panels still read from the dock, delegated to the
dock's ``DockState``: once those panels take the ``DockState`` themselves, this goes."""
from __future__ import annotations

import numpy as np

from .state import Proposal


class DockDelegates:
    """Mixed into the dock widget, which sets ``self.state`` (a DockState)."""

    @property
    def model_version(self) -> int | None:
        return self.session.model_version

    @property
    def current(self) -> Proposal | None:
        """The proposal on screen (kept in the shared state)."""
        return self.state.current

    @current.setter
    def current(self, proposal: Proposal | None) -> None:
        self.state.current = proposal

    def predictor(self, device: str | None = None):
        """The session's Predictor on ``device`` (default: the dock's) at the Fast mode's
        precisions (loaded on first use; call from a worker thread holding ``session.lock``)."""
        return self.state.predictor(device)

    def image_for(self, layer) -> np.ndarray:
        """The layer's image, or its slice on screen for a 3-D volume."""
        return self.state.image_for(layer)

    def slice_index_of(self, layer) -> int | None:
        """The slice on screen (axis 0) of a 3-D volume layer; None for a 2-D image."""
        return self.state.slice_index_of(layer)

    def proposal_labels(self) -> np.ndarray:
        """The current proposal's label map as shown (before any edit)."""
        return self.current.labels()

    def edited_labels(self) -> np.ndarray | None:
        """The current proposal layer's data if the annotator changed it, else None."""
        return self.state.edited_labels()

    def unsaved_edits(self) -> np.ndarray | None:
        """Edits of the current proposal that are neither the proposal nor already accepted."""
        return self.state.unsaved_edits()

    def replace_if_untouched(self, image: str, result, model_version: int | None) -> bool:
        """A background proposal replaces the untouched layer of the image on screen."""
        return self.state.replace_if_untouched(image, result, model_version)
