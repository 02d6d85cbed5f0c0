"""Boxes and clicks as instances: what :meth:`Predictor.predict_boxes` and
:meth:`Predictor.predict_points` return, built from :class:`SpatialSegmenter` answers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .spatial import SpatialMask, SpatialSegmenter, check_box, check_points


@dataclass
class SpatialPrediction:
    """One mask per instance (box, or group of clicks), all of one class.

    masks (N, H, W) bool; scores (N,) the decoder's predicted IoU; labels (H, W) int32 with
    0 = background and i + 1 = instance i (a later instance wins where two overlap);
    source "box" or "click". For a single object from clicks, ``candidates`` (M, H, W) bool
    are the alternative masks, the default first (``masks[0]`` is ``candidates[0]``), with each
    one's own predicted quality in ``candidate_scores`` (M,), for a dock to cycle through, and
    its kind in ``candidate_names`` (``edited`` first where a shown mask was corrected).
    """
    masks: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    source: str
    candidates: np.ndarray | None = None
    candidate_scores: np.ndarray | None = None
    candidate_names: tuple[str, ...] | None = None


def _labels(masks: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape, np.int32)
    for i, m in enumerate(masks):
        out[m] = i + 1
    return out


def _stack(answers: list[SpatialMask], shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    masks = np.stack([a.mask for a in answers]) if answers else np.zeros((0, *shape), bool)
    return masks, np.asarray([a.score for a in answers], np.float32)


def predict_boxes(seg: SpatialSegmenter, boxes, *, zoom: bool = True) -> SpatialPrediction:
    """``boxes``: one (row0, col0, row1, col1) box or (N, 4), one instance each. Every box is
    checked before any is decoded, so a bad one changes nothing."""
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 4 or len(arr) == 0:
        raise ValueError(f"boxes must be (N, 4) rows of (row0, col0, row1, col1), got shape {arr.shape}")
    checked = [check_box(b, seg.shape) for b in arr]
    answers = [seg.segment_box(b, zoom=zoom) for b in checked]
    masks, scores = _stack(answers, seg.shape)
    return SpatialPrediction(masks, scores, _labels(list(masks), seg.shape), "box")


def predict_points(seg: SpatialSegmenter, points, point_labels=None,
                   instances: Sequence[int] | None = None, shown: np.ndarray | None = None) -> SpatialPrediction:
    """``points`` (P, 2) row, col; ``point_labels`` (P,) 1 inside, 0 outside; ``instances``
    (P,) groups the clicks into objects (default: one object). All clicks are checked first.
    ``shown`` (one object only): the mask on screen before the last click, which that click
    then corrects near itself (:meth:`SpatialSegmenter.click_masks`)."""
    pts, lab = check_points(points, point_labels, seg.shape)
    ids = np.zeros(len(pts), np.int64) if instances is None else np.asarray(instances).reshape(-1)
    if len(ids) != len(pts):
        raise ValueError(f"{len(pts)} clicks but {len(ids)} instance ids")
    groups = list(dict.fromkeys(ids.tolist()))
    if shown is not None and len(groups) > 1:
        raise ValueError("a shown mask is corrected by the clicks of one object, not of several")
    for g in groups:
        if not (lab[ids == g] == 1).any():
            raise ValueError(f"instance {g} has no inside click (label 1)")
    answers = [seg.click_masks(pts[ids == g], lab[ids == g], shown=shown) for g in groups]
    masks, scores = _stack([next(iter(a.values())) for a in answers], seg.shape)
    pred = SpatialPrediction(masks, scores, _labels(list(masks), seg.shape), "click")
    if len(answers) == 1:
        pred.candidates, pred.candidate_scores = _stack(list(answers[0].values()), seg.shape)
        pred.candidate_names = tuple(answers[0])
    return pred
