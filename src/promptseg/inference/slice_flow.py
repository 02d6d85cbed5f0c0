"""Carry a slice's labels to its neighbour along the anatomy: slice-to-slice optical flow.

Neighbouring slices of a volume show the same structures, shifted and deformed a little. The
TV-L1 optical flow between the two slices' intensities tells where each pixel of the next slice
comes from, and the labels are resampled along it (each class's indicator interpolated, then
the largest taken). On the AAL atlas this beats copying the labels (docs/benchmarks.md, "AAL
coarse classes").
"""
from __future__ import annotations

import numpy as np

# Flow is computed on slices at most this many pixels on a side (larger ones are downsampled
# and the flow scaled back): TV-L1's cost grows with the pixel count, and coarse flow suffices.
FLOW_MAX_SIDE = 256


class IntensityScale:
    """One intensity window for a whole volume (0.5-99.5 percentiles), so that every pair of
    slices is compared on the same scale: 16-bit, CT and float volumes alike."""

    def __init__(self, volume: np.ndarray):
        v = np.asarray(volume)
        sample = v.reshape(-1)[:: max(1, v.size // 2_000_000)].astype(np.float64)
        sample = sample[np.isfinite(sample)]
        if sample.size == 0:
            raise ValueError("the volume has no finite values to compute a flow from")
        self.lo, self.hi = np.percentile(sample, [0.5, 99.5])
        if self.hi <= self.lo:
            self.hi = self.lo + 1.0

    def __call__(self, image: np.ndarray) -> np.ndarray:
        x = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=float(self.lo))
        return np.clip((x - self.lo) / (self.hi - self.lo), 0.0, 1.0)


def slice_flow(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(2, H, W) displacement such that ``source`` sampled at (row + flow[0], col + flow[1])
    looks like ``target``. Both are 2-D, scaled to [0, 1]."""
    return upsample_flow(coarse_flow(source, target), np.shape(source))


def coarse_flow(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """:func:`slice_flow` on the grid it is computed on (at most ``FLOW_MAX_SIDE`` px a side,
    in that grid's pixels): a quarter of the memory of a 512² flow, for keeping flows."""
    from skimage.registration import optical_flow_tvl1
    from skimage.transform import resize

    if source.shape != target.shape or source.ndim != 2:
        raise ValueError(f"slices must be 2-D and the same shape, got {source.shape} and {target.shape}")
    h, w = source.shape
    scale = min(1.0, FLOW_MAX_SIDE / max(h, w))
    if scale == 1.0:
        return optical_flow_tvl1(target, source).astype(np.float32)
    small = (max(8, round(h * scale)), max(8, round(w * scale)))
    return optical_flow_tvl1(resize(target, small, anti_aliasing=True),
                             resize(source, small, anti_aliasing=True)).astype(np.float32)


def upsample_flow(flow: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A :func:`coarse_flow` at the slices' ``shape`` (H, W), in their pixels."""
    h, w = shape
    if flow.shape[1:] == (h, w):
        return flow
    from skimage.transform import resize

    up = np.stack([resize(c, (h, w), order=1) for c in flow])
    up[0] *= h / flow.shape[1]
    up[1] *= w / flow.shape[2]
    return up.astype(np.float32)


def warp_labels(labels: np.ndarray, flow: np.ndarray, n_classes: int) -> np.ndarray:
    """``labels`` (H, W), values 0..n_classes, resampled along ``flow``: each class's indicator
    is interpolated bilinearly and every pixel takes the largest (background included)."""
    from scipy import ndimage as ndi

    labels = np.asarray(labels)
    h, w = labels.shape
    rr, cc = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    coords = np.stack([rr + flow[0], cc + flow[1]])
    present = [c for c in range(n_classes + 1) if c == 0 or (labels == c).any()]
    best = np.full((h, w), -1.0, np.float32)
    out = np.zeros((h, w), np.int32)
    for c in present:
        p = ndi.map_coordinates((labels == c).astype(np.float32), coords, order=1, mode="nearest")
        take = p > best
        best[take], out[take] = p[take], c
    return out
