"""3-D volumes, one slice at a time: propose on every slice, propagate from annotated slices.

Plain numpy + a Predictor (no Qt), used by the napari dock and usable from scripts. Both
work along any axis and yield after every slice, so a caller can show progress and stop.

Propagation: the annotator's slices (seeds) stay as they are; every other slice is filled from
its neighbour on the side of the nearest seed, walking outwards from each seed (a slice between
two seeds takes the nearer one). The neighbour's labels are carried onto the slice along the
slice-to-slice optical flow (inference/slice_flow.py), so they move with the anatomy, and taken as
they are (mode ``flow``), or used as the dense mask prompt of the model's decoding and blended
with its output (``flow+model``); mode ``model`` decodes with the neighbour's labels as they are.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ContextManager, Iterator, Sequence

import numpy as np

from .slice_flow import IntensityScale, coarse_flow, upsample_flow, warp_labels


def volume_slices(volume: np.ndarray, axis: int) -> int:
    if np.ndim(volume) != 3:
        raise ValueError(f"a volume must be 3-D (slices, rows, columns), got shape {np.shape(volume)}")
    if not -3 <= axis < 3:
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    return int(np.shape(volume)[axis])


def take_slice(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    return np.take(np.asarray(volume), index, axis=axis)


@dataclass
class SliceResult:
    index: int           # slice number along the axis
    done: int            # slices finished so far (for a progress bar)
    total: int
    labels: np.ndarray   # (H, W) int32 label map of this slice
    probs: np.ndarray | None = None     # (K, H, W) float16, for proposals
    presence: np.ndarray | None = None  # (K,)


def propose_slices(predictor, volume: np.ndarray, prompts: Sequence[str], axis: int = 0,
                   threshold: float | None = None, lock: ContextManager | None = None) -> Iterator[SliceResult]:
    """Text-prompt proposal on every slice along ``axis``, in order. ``lock`` is held around
    each slice's set_image + predict (a predictor shared with other threads)."""
    n = volume_slices(volume, axis)
    for z in range(n):
        with lock or contextlib.nullcontext():
            predictor.set_image(take_slice(volume, axis, z))
            r = predictor.predict(list(prompts), threshold=threshold)
        yield SliceResult(z, z + 1, n, r.labels.astype(np.int32), r.probs.astype(np.float16), r.presence)


def nearest_seed(z: int, seeds: Sequence[int]) -> int:
    """The seed slice nearest to ``z`` (the lower one on a tie)."""
    return min(seeds, key=lambda s: (abs(z - s), s))


def propagation_order(n: int, seeds: Sequence[int]) -> list[tuple[int, int]]:
    """(slice, neighbour it is prompted from) for every non-seed slice, each after its
    neighbour: slices are taken by distance to the nearest seed, ties to the lower seed."""
    seeds = sorted(set(int(s) for s in seeds))
    if not seeds:
        raise ValueError("annotate at least one slice before propagating")
    if seeds[0] < 0 or seeds[-1] >= n:
        raise ValueError(f"seed slices {seeds} outside 0..{n - 1}")
    order = []
    for z in range(n):
        if z in seeds:
            continue
        seed = nearest_seed(z, seeds)
        order.append((abs(z - seed), z, z - 1 if seed < z else z + 1))
    return [(z, src) for _, z, src in sorted(order)]


PROPAGATE_MODES = ("flow", "flow+model", "model")
# "flow+model": a pixel's score per class is this share of the carried labels plus the rest of
# the model's probability, so at the 0.5 threshold the model removes a carried label only where
# it gives it under 1/6 and adds one only over 5/6. On the AAL --quick bench 0.4 scored above
# 0.3 and above the model's labels alone (0).
CARRIED_SHARE = 0.4


def propagate(predictor, volume: np.ndarray, labels: np.ndarray, seeds: Sequence[int],
              prompts: Sequence[str], axis: int = 0, threshold: float | None = None,
              lock: ContextManager | None = None, mode: str = "flow",
              flows: dict[tuple[int, int], np.ndarray] | None = None) -> Iterator[SliceResult]:
    """Fill every non-seed slice of ``labels`` (values 0..len(prompts)) from the seeds outwards;
    each slice from its neighbour towards the nearest seed. ``mode``:

    - ``flow``: the neighbour's labels carried along the optical flow; no model (``predictor``
      may be None);
    - ``flow+model``: the slice decoded with the carried labels as the dense mask prompt, and
      the model's probabilities blended with the carried labels (``CARRIED_SHARE``);
    - ``model``: the slice decoded with the neighbour's labels as they are as the mask prompt;
      the model's labels.

    ``labels`` is not modified; each yielded result is one finished slice. ``flows``: a dict
    that keeps the slice-to-slice flows ((source, target) -> :func:`coarse_flow`) for later calls
    on the same volume and axis, which then reuse them (the flow does not depend on the labels,
    the seeds or the model).
    """
    if mode not in PROPAGATE_MODES:
        raise ValueError(f"mode must be one of {', '.join(PROPAGATE_MODES)}, got {mode!r}")
    n, k = volume_slices(volume, axis), len(prompts)
    if np.shape(labels) != np.shape(volume):
        raise ValueError(f"labels shape {np.shape(labels)} differs from the volume's {np.shape(volume)}")
    out = np.moveaxis(np.array(labels, dtype=np.int32), axis, 0)
    if out.min() < 0 or out.max() > k:
        raise ValueError(f"label values must be 0..{k} for the classes {', '.join(prompts)}")
    order = propagation_order(n, seeds)
    scale = IntensityScale(volume) if mode != "model" else None
    tau = 0.5 if threshold is None else float(threshold)
    for done, (z, src) in enumerate(order, 1):
        image = take_slice(volume, axis, z)
        if scale is None:
            moved = out[src]
        else:
            flow = None if flows is None else flows.get((src, z))
            if flow is None:
                flow = coarse_flow(scale(take_slice(volume, axis, src)), scale(image))
                if flows is not None:
                    flows[(src, z)] = flow
            moved = warp_labels(out[src], upsample_flow(flow, image.shape[:2]), k)
        if mode == "flow":
            out[z] = moved
            yield SliceResult(z, done, len(order), moved.copy())
            continue
        prompt = np.stack([(moved == c + 1) for c in range(k)]).astype(np.float32)
        with lock or contextlib.nullcontext():
            predictor.set_image(image)
            r = predictor.predict(list(prompts), threshold=threshold, mask_prompt=prompt)
        if mode == "model":
            out[z] = r.labels
        else:
            score = CARRIED_SHARE * prompt + (1 - CARRIED_SHARE) * r.probs
            out[z] = np.where(score.max(0) >= tau, score.argmax(0) + 1, 0)
        yield SliceResult(z, done, len(order), out[z].copy(), r.probs.astype(np.float16), r.presence)


def annotated_slices(labels: np.ndarray, proposal: np.ndarray | None, axis: int = 0) -> list[int]:
    """Slices the annotator worked on: those that differ from the proposal, or, without a
    proposal, those with any label."""
    lab = np.moveaxis(np.asarray(labels), axis, 0)
    if proposal is None:
        return [int(z) for z in np.flatnonzero(lab.reshape(len(lab), -1).any(1))]
    prop = np.moveaxis(np.asarray(proposal), axis, 0)
    diff = (lab != prop).reshape(len(lab), -1).any(1)
    return [int(z) for z in np.flatnonzero(diff)]
