"""Turn arbitrary 2-D images into the float32 H×W×3 [0, 1] tensor the model expects.

Everything here is pure numpy so it can run headless (CLI, benchmarks, tests).
"""

from __future__ import annotations


import numpy as np

from .limits import check_pixels

__all__ = ["prepare_image", "spatial_shape", "hwc_view", "prepare_hwc", "scale_table"]

_HWC_CHANNELS = (1, 3, 4)
_CHW_CHANNELS = (1, 3)


def _describe(arr: np.ndarray) -> str:
    return f"shape {tuple(arr.shape)}, dtype {arr.dtype}"


def _check_dtype(arr: np.ndarray) -> None:
    kind = arr.dtype.kind
    if kind == "c":
        raise ValueError(
            f"complex-valued images are not supported ({_describe(arr)}); "
            "pass the magnitude (np.abs) or the real part"
        )
    if kind not in "biuf":
        # object, string, datetime, structured: no meaningful intensity scale
        raise ValueError(
            f"image must have a numeric dtype (bool, int, uint or float); got {_describe(arr)}"
        )


def _layout(arr: np.ndarray) -> str:
    """Classify the array as 'gray', 'hwc' or 'chw' or raise a descriptive ValueError."""
    if arr.size == 0:
        raise ValueError(f"image is empty (zero-size array, {_describe(arr)})")
    if arr.ndim == 2:
        return "gray"
    if arr.ndim != 3:
        raise ValueError(
            f"expected a 2-D image (H×W or H×W×C); got a {arr.ndim}-D array of "
            f"{_describe(arr)}. For volumes pass one slice"
        )
    first, last = arr.shape[0], arr.shape[-1]
    if last in _HWC_CHANNELS:
        return "hwc"
    # Channel-first only when the trailing axis is clearly spatial, so that a
    # small H×W×C array is never mistaken for C×H×W.
    if first <= 4 and last > 4:
        if first in _CHW_CHANNELS:
            return "chw"
        raise ValueError(
            f"channel-first image with {first} channels is not supported ({_describe(arr)}); "
            "expected 1 or 3 channels"
        )
    raise ValueError(
        f"expected 1, 3 or 4 channels in the last axis (gray, RGB, RGBA); got {last} "
        f"({_describe(arr)}). For volumes pass one slice"
    )


def spatial_shape(img: np.ndarray) -> tuple[int, int]:
    """(H, W) of ``img`` using the same channel interpretation as :func:`prepare_image`."""
    arr = np.asarray(img)
    _check_dtype(arr)
    layout = _layout(arr)
    if layout == "chw":
        return int(arr.shape[1]), int(arr.shape[2])
    return int(arr.shape[0]), int(arr.shape[1])


def hwc_view(img: np.ndarray) -> np.ndarray:
    """``img`` validated and viewed as H×W×C with C in {1, 3} (no copy where possible):
    gray gets a channel axis, C×H×W is moved, RGBA's alpha is dropped. Raises ValueError like
    :func:`prepare_image` (NaN/Inf included)."""
    arr = np.asarray(img)
    _check_dtype(arr)
    layout = _layout(arr)
    check_pixels(arr.shape[1:] if layout == "chw" else arr.shape[:2])
    if layout == "gray":
        arr = arr[:, :, None]
    elif layout == "chw":
        arr = np.moveaxis(arr, 0, -1)
    if arr.shape[-1] == 4:
        arr = arr[..., :3]
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            n_bad = int(bad.any(axis=-1).sum())
            raise ValueError(
                f"image contains NaN/Inf values ({n_bad} pixels) in {_describe(np.asarray(img))}; "
                "replace them (e.g. np.nan_to_num) before segmenting"
            )
    return arr


def scale_table(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """For an 8/16-bit (or bool) :func:`hwc_view` array: ``(idx, lut)`` with ``lut[idx]`` equal
    to :func:`prepare_image`'s result (before the gray channel is repeated); None for other
    dtypes. ``lut`` holds one float32 value per grey level, computed in float64, so the lookup
    is the float64 path's result without float64 arithmetic on every pixel, and it can be done
    where the pixels go (a GPU) from the small integer image."""
    if arr.dtype.kind not in "biu" or arr.dtype.itemsize > 2:
        return None
    lo_i, hi_i = int(arr.min()), int(arr.max())
    lut = _scaled(np.arange(lo_i, hi_i + 1, dtype=np.float64), lo_i, hi_i).astype(np.float32)
    idx = arr - arr.dtype.type(lo_i) if arr.dtype.kind == "u" else arr.astype(np.int32) - lo_i   # >= 0, no overflow
    return idx, lut


def prepare_image(img: np.ndarray) -> np.ndarray:
    """Return a C-contiguous float32 H×W×3 copy of ``img`` min–max scaled to [0, 1].

    Accepts H×W, H×W×1, H×W×3, H×W×4 (alpha dropped) and C×H×W with C in {1, 3}.
    A constant image maps to zeros. Raises ValueError for anything the model
    cannot consume, naming the problem together with the shape and dtype.
    """
    return prepare_hwc(hwc_view(img))


def prepare_hwc(arr: np.ndarray) -> np.ndarray:
    """:func:`prepare_image` of an array already through :func:`hwc_view` (not validated again)."""
    out = np.empty(arr.shape[:2] + (3,), np.float32)
    table = scale_table(arr)
    if table is not None:
        idx, lut = table
        out[:] = lut[idx]          # (H, W, 1) broadcasts to the 3 channels
    else:
        # float64 for the arithmetic: uint32/int64 ranges and tiny float ranges
        # would lose precision or overflow in float32.
        out[:] = _scaled(arr.astype(np.float64), float(arr.min()), float(arr.max()))
    return out


def _scaled(work: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``work`` (float64) min-max scaled to [0, 1] by ``lo``/``hi``; a constant image maps to zeros."""
    if hi <= lo:
        return np.zeros_like(work)
    if not np.isfinite(hi - lo):   # e.g. -1e308..1e308: halve first so the range stays finite
        work *= 0.5
        lo, hi = lo * 0.5, hi * 0.5
    work -= lo
    work /= hi - lo
    return np.clip(work, 0.0, 1.0)


