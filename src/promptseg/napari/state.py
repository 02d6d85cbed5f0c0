"""The proposal on screen: which image, which layer, what the model said (no Qt here; the
scores that rank images are workflow/scoring.py)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Proposal:
    """A proposal shown as a Labels layer. ``probs`` is None for one restored from the project
    or a draft: then ``fixed`` holds the proposal's label map and the threshold cannot re-merge."""
    layer: str                       # name of the Labels layer
    image: str                       # image name (= project image name when in a project)
    prompts: list[str]
    image_array: np.ndarray          # the 2-D image (slice) or the 3-D volume the proposal is for
    probs: np.ndarray | None = None  # (K, H, W) or (K, Z, H, W)
    presence: np.ndarray | None = None
    fixed: np.ndarray | None = None  # proposal label map when probs is None
    model_version: int | None = None
    prompt: str = ""
    tau: float = 0.5                 # threshold the layer was merged at
    shown_at: float = field(default_factory=time.time)
    saved_proposal: np.ndarray | None = None  # proposal label map already stored in the project
    accepted: np.ndarray | None = None        # label map last accepted (stored) for this image
    refine: dict | None = None                # points / box / exemplars of the last Refine
    slice_index: int | None = None            # for a proposal on one slice of a volume (axis 0)
    stashed: np.ndarray | None = None         # edits last kept as a draft (not saved twice)
    objects: list = field(default_factory=list)   # workflow/objects.MaskObject from boxes, clicks, exemplars

    def labels(self, tau: float | None = None) -> np.ndarray:
        tau = self.tau if tau is None else tau
        if self.probs is None:
            return np.asarray(self.fixed, np.int32)
        return np.where(self.probs.max(0) >= tau, self.probs.argmax(0) + 1, 0).astype(np.int32)
