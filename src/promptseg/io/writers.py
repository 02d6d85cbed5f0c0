"""Write label masks to TIFF or NIfTI, atomically.

A crash or a full disk mid-write must never leave a half-written mask in place
of the user's previous annotations, so every write goes to a temp file in the
target folder, is fsync'ed and then swapped in with os.replace.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..fsutil import atomic_path

__all__ = ["write_labels", "LABEL_SUFFIXES"]

_TIFF = (".tif", ".tiff")
_NIFTI = (".nii.gz", ".nii")
LABEL_SUFFIXES: tuple[str, ...] = _TIFF + _NIFTI


def _suffix(path: Path) -> str | None:
    name = path.name.lower()
    for suf in (".nii.gz",) + _TIFF + (".nii",):
        if name.endswith(suf):
            return suf
    return None


def _compact(labels: np.ndarray) -> np.ndarray:
    """Smallest integer dtype holding the labels.

    Keeps files small and avoids int64, which NIfTI tools and ImageJ reject.
    """
    if labels.dtype == bool:
        return labels.astype(np.uint8)
    if labels.size == 0:
        return labels
    lo, hi = int(labels.min()), int(labels.max())
    candidates = (np.uint8, np.uint16, np.uint32) if lo >= 0 else (np.int8, np.int16, np.int32)
    for dt in candidates:
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return labels.astype(dt, copy=False)
    return labels


def _spacing(meta: dict[str, Any], ndim: int) -> list[float]:
    sp = [float(s) for s in (meta.get("spacing") or ())]
    if len(sp) >= ndim:
        return sp[-ndim:] if ndim else []
    return [1.0] * (ndim - len(sp)) + sp


def write_labels(path: str | os.PathLike, labels: np.ndarray,
                 meta: dict[str, Any] | None = None) -> Path:
    """Atomically write an integer/bool label array to .tif/.tiff/.nii/.nii.gz.

    For NIfTI, ``meta['affine']`` (4×4) is used when present, else
    ``diag(spacing)``; for TIFF the spacing is stored in the JSON description
    so :func:`promptseg.io.read_image` restores it. Returns the written path.
    """
    p = Path(path)
    meta = dict(meta or {})
    arr = np.asarray(labels)
    if arr.dtype.kind not in "biu":
        raise ValueError(f"labels must be an integer or bool array; got dtype {arr.dtype} "
                         f"(shape {arr.shape})")
    suffix = _suffix(p)
    if suffix is None:
        raise ValueError(f"cannot write labels to {p}: unsupported extension; "
                         f"use one of {', '.join(LABEL_SUFFIXES)}")
    if not p.parent.is_dir():
        raise FileNotFoundError(f"folder does not exist: {p.parent}")
    arr = _compact(arr)

    if suffix in _TIFF:
        import tifffile

        spacing = _spacing(meta, arr.ndim)

        def write(tmp: str) -> None:
            # minisblack: otherwise tifffile stores small leading axes (<=4) as RGB planes.
            tifffile.imwrite(tmp, arr, compression="zlib", photometric="minisblack",
                             metadata={"spacing": spacing})
    else:
        import nibabel as nib

        if arr.ndim > 7 or arr.ndim == 0:
            raise ValueError(f"NIfTI labels must have 1 to 7 dimensions; got shape {arr.shape}")
        affine = meta.get("affine")
        if affine is not None:
            affine = np.asarray(affine, dtype=float)
            if affine.shape != (4, 4):
                raise ValueError(f"meta['affine'] must be 4x4; got shape {affine.shape}")
        else:
            n = min(arr.ndim, 3)
            diag = _spacing(meta, n) + [1.0] * (3 - n)
            affine = np.diag(diag + [1.0])
        img = nib.Nifti1Image(arr, affine)
        img.set_data_dtype(arr.dtype)
        img.header.set_xyzt_units("mm")
        img.header.set_intent("label")
        img.set_qform(affine, code=1)
        img.set_sform(affine, code=1)

        def write(tmp: str) -> None:
            nib.save(img, tmp)

    with atomic_path(p, keep_suffix=True) as tmp:
        write(str(tmp))
    return p
