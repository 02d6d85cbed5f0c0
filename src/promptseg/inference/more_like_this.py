"""One-shot "more like this": find every region like a few exemplar masks, without training.

The route (training-free, measured in docs/benchmarks.md against the encoder-token variants):
1. per-pixel features: CIELAB and haematoxylin-eosin-DAB colour at four blur scales, each
   channel standardised over its own image, so exemplars from one image (one stain) carry to
   another;
2. positives are the exemplars' pixels; negatives a ring just outside them (the hard cases:
   cytoplasm and stroma next to a nucleus), never "everything else", because unlabelled
   instances of the same class lie outside the exemplars;
3. a logistic regression fitted at once on those pixels scores every pixel of any image;
4. the thresholded map, opened, hole-filled and rid of specks smaller than the exemplars
   suggest, gives the instances as connected components.
:class:`Exemplars` holds only feature vectors, so exemplars from image A apply to image B.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

BLUR_SIGMAS = (0.0, 1.0, 2.0, 4.0)
RING_GAP, RING_WIDTH = 2, 4          # negatives: pixels 2..6 px outside the exemplars
MAX_POSITIVES, MAX_NEGATIVES = 6000, 12000
L2 = 1e-2


def pixel_features(image: np.ndarray) -> np.ndarray:
    """(H, W, C) float32 colour features of an RGB or grey image, standardised per image."""
    from scipy import ndimage as ndi
    from skimage.color import rgb2hed, rgb2lab

    arr = np.asarray(image)
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == 1):
        arr = np.repeat(arr.reshape(arr.shape[0], arr.shape[1], 1), 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"more like this needs an H×W grey or H×W×3 RGB image, got shape {arr.shape}")
    arr = arr[..., :3]
    if np.issubdtype(arr.dtype, np.integer):
        rgb = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
    else:
        rgb = arr.astype(np.float32)
        lo, hi = float(np.nanmin(rgb)), float(np.nanmax(rgb))
        if not np.isfinite(rgb).all():
            raise ValueError("the image has NaN or infinite values")
        rgb = (rgb - lo) / (hi - lo) if hi > lo else np.zeros_like(rgb)
    base = np.concatenate([rgb2lab(rgb), rgb2hed(rgb)], axis=-1).astype(np.float32)
    parts = [base if s == 0 else ndi.gaussian_filter(base, (s, s, 0)) for s in BLUR_SIGMAS]
    feats = np.concatenate(parts, axis=-1)
    mean = feats.mean((0, 1), keepdims=True)
    std = feats.std((0, 1), keepdims=True)
    return (feats - mean) / (std + 1e-6)


def exemplar_components(masks: np.ndarray | Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Exemplars as one (H, W) int32 map, one id per exemplar: a list of binary masks, or
    one mask whose connected components (or label values) are the exemplars."""
    from scipy import ndimage as ndi

    if isinstance(masks, np.ndarray) and masks.ndim == 2:
        masks = [masks]
    stack = [np.asarray(m) for m in masks]
    if not stack:
        raise ValueError("no exemplar masks given: pass one or more masks of the class")
    out = np.zeros(shape, np.int32)
    for m in stack:
        if m.shape != tuple(shape):
            raise ValueError(f"exemplar mask shape {m.shape} != image shape {tuple(shape)}")
        lab, n = ndi.label(m > 0)
        out[lab > 0] = lab[lab > 0] + out.max()
    if out.max() == 0:
        raise ValueError("the exemplar masks are empty: mark at least one object of the class")
    return out


def _sample(rows: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return rows if len(rows) <= n else rows[rng.choice(len(rows), n, replace=False)]


@dataclass
class Exemplars:
    """Feature vectors of exemplar pixels and of the ring around them; image-independent."""
    positives: np.ndarray   # (N, C) float32
    negatives: np.ndarray   # (M, C) float32
    areas: np.ndarray       # (E,) pixel area of each exemplar
    _weights: torch.Tensor | None = None

    @classmethod
    def from_masks(cls, image: np.ndarray, masks: np.ndarray | Sequence[np.ndarray],
                   features: np.ndarray | None = None, seed: int = 0) -> "Exemplars":
        """Exemplars of ``image`` (H×W[×3]) from ``masks`` (see :func:`exemplar_components`);
        ``features``: :func:`pixel_features` of ``image`` if already computed."""
        from scipy import ndimage as ndi

        feats = pixel_features(image) if features is None else features
        comp = exemplar_components(masks, feats.shape[:2])
        fg = comp > 0
        ring = ndi.binary_dilation(fg, iterations=RING_GAP + RING_WIDTH) & ~ndi.binary_dilation(fg, iterations=RING_GAP)
        if not ring.any():
            raise ValueError("the exemplars cover the whole image: nothing around them to tell them apart from")
        rng = np.random.default_rng(seed)
        areas = np.bincount(comp.ravel())[1:].astype(np.float32)
        return cls(_sample(feats[fg], MAX_POSITIVES, rng), _sample(feats[ring], MAX_NEGATIVES, rng), areas[areas > 0])

    def merged(self, other: "Exemplars") -> "Exemplars":
        """Exemplars of both sets (e.g. from two images)."""
        return Exemplars(np.concatenate([self.positives, other.positives]),
                         np.concatenate([self.negatives, other.negatives]),
                         np.concatenate([self.areas, other.areas]))

    def weights(self) -> torch.Tensor:
        """Logistic-regression weights (C + 1,), fitted once on the exemplar pixels."""
        if self._weights is None:
            x = torch.from_numpy(np.concatenate([self.positives, self.negatives])).float()
            y = torch.cat([torch.ones(len(self.positives)), torch.zeros(len(self.negatives))])
            self._weights = fit_logistic(x, y)
        return self._weights


def fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float = L2, iters: int = 200) -> torch.Tensor:
    """Class-balanced, L2-regularised logistic regression by L-BFGS; weights with bias last."""
    xb = torch.cat([x, torch.ones(len(x), 1)], 1)
    w = torch.zeros(xb.shape[1], requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=iters, line_search_fn="strong_wolfe")
    pos_weight = (y == 0).sum() / (y == 1).sum().clamp_min(1)

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(xb @ w, y, pos_weight=pos_weight) + l2 * (w[:-1] ** 2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach()


@dataclass
class ExemplarMatch:
    probs: np.ndarray       # (H, W) float32: probability that a pixel is like the exemplars
    instances: np.ndarray   # (H, W) int32: 0 background, 1..n one id per proposed instance

    @property
    def mask(self) -> np.ndarray:
        return self.instances > 0

    @property
    def n_instances(self) -> int:
        return int(self.instances.max())


def match_exemplars(image: np.ndarray, exemplars: Exemplars, threshold: float = 0.5,
                    features: np.ndarray | None = None) -> ExemplarMatch:
    """Every region of ``image`` like ``exemplars``, as probabilities and instances."""
    from scipy import ndimage as ndi

    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    feats = pixel_features(image) if features is None else features
    h, w, c = feats.shape
    wts = exemplars.weights()
    if wts.shape[0] != c + 1:
        raise ValueError(f"exemplars have {wts.shape[0] - 1} features per pixel, this image {c}")
    logits = torch.from_numpy(feats.reshape(-1, c)) @ wts[:-1] + wts[-1]
    probs = torch.sigmoid(logits).reshape(h, w).numpy().astype(np.float32)
    fg = ndi.binary_fill_holes(ndi.binary_opening(probs > threshold))
    lab, n = ndi.label(fg)
    if n:
        min_area = max(4.0, 0.25 * float(np.median(exemplars.areas)))
        area = np.bincount(lab.ravel())
        keep = area >= min_area
        keep[0] = False
        relabel = np.zeros(n + 1, np.int32)
        relabel[keep] = np.arange(1, int(keep.sum()) + 1)
        lab = relabel[lab]
    return ExemplarMatch(probs, lab.astype(np.int32))
