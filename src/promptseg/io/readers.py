"""Read microscopy / medical images into (array, meta) without napari.

meta always holds ``source`` (str path), ``format``, ``spacing`` (one float
per spatial axis, 1.0 when unknown) and ``rgb`` (the last axis is colour: only from 2-D
formats or an explicit samples axis, so a NIfTI, DICOM series or multi-page TIFF with 3 or
4 slices stays a volume). The size limit (limits.py) is checked from the header first. Library errors are re-raised as
``ValueError("cannot read <path>: <reason>")`` so callers (CLI, napari reader)
can show one clean message instead of a library traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .limits import ImageTooLarge, check_pixels

__all__ = ["read_image", "SUPPORTED_SUFFIXES", "is_dicom_file", "has_dicom_files"]

_TIFF = (".tif", ".tiff")
_PIL = (".png", ".jpg", ".jpeg", ".bmp")
_NIFTI = (".nii", ".nii.gz")
_DICOM = (".dcm",)
SUPPORTED_SUFFIXES: tuple[str, ...] = _TIFF + _PIL + _NIFTI + _DICOM


def _fail(path: Path, reason: object) -> ValueError:
    return ValueError(f"cannot read {path}: {reason}")


def _has_suffix(path: Path, suffixes: tuple[str, ...]) -> bool:
    return path.name.lower().endswith(suffixes)


def is_dicom_file(path: str | os.PathLike) -> bool:
    """True if ``path`` is a file with the DICOM preamble magic (or a .dcm name)."""
    p = Path(path)
    if not p.is_file():
        return False
    try:
        with open(p, "rb") as fh:
            fh.seek(128)
            if fh.read(4) == b"DICM":
                return True
    except OSError:
        return False
    # Some exporters omit the 128-byte preamble; trust the extension then.
    return _has_suffix(p, _DICOM)


def has_dicom_files(folder: str | os.PathLike) -> bool:
    """True if the folder directly contains at least one DICOM file."""
    p = Path(folder)
    if not p.is_dir():
        return False
    return any(is_dicom_file(f) for f in p.iterdir() if not f.name.startswith("."))


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """Read an image file (or a DICOM series folder) into ``(array, meta)``."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such file or folder: {p}")
    if p.is_dir():
        return _read_dicom_series(p)
    if _has_suffix(p, _TIFF):
        return _read_tiff(p)
    if _has_suffix(p, _PIL):
        return _read_pil(p)
    if _has_suffix(p, _NIFTI):
        return _read_nifti(p)
    if _has_suffix(p, _DICOM) or is_dicom_file(p):
        return _read_dicom_file(p)
    raise _fail(p, f"unsupported file type; expected one of {', '.join(SUPPORTED_SUFFIXES)} "
                   "or a folder holding one DICOM series")


def _meta(p: Path, fmt: str, spacing: tuple[float, ...], rgb: bool = False, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"source": str(p), "format": fmt,
                            "spacing": tuple(float(s) for s in spacing), "rgb": bool(rgb)}
    meta.update(extra)
    return meta


# --------------------------------------------------------------------------- TIFF
def _read_tiff(p: Path) -> tuple[np.ndarray, dict[str, Any]]:
    import tifffile

    try:
        with tifffile.TiffFile(p) as tif:
            series = tif.series[0]
            axes = series.axes
            check_pixels([n for n, a in zip(series.shape, axes) if a not in "SC"], str(p))
            data = series.asarray()
            shaped = tif.shaped_metadata
            imagej = tif.imagej_metadata
            page = tif.pages.first
            tags = {t.name: t.value for t in page.tags}
    except ImageTooLarge:
        raise
    except Exception as exc:  # tifffile raises many types on corrupt input
        raise _fail(p, exc) from exc

    # 'S'/'C' are channel (sample) axes; every other axis is spatial or time.
    spatial = [a for a in axes if a not in "SC"]
    spacing = [1.0] * len(spatial)
    # Our own writer stores spacing in the JSON "shaped" description.
    if shaped and isinstance(shaped[0], dict) and "spacing" in shaped[0]:
        stored = [float(s) for s in shaped[0]["spacing"]]
        if len(stored) == len(spacing):
            spacing = stored
    else:
        # Otherwise honour XResolution/YResolution (pixels per unit) and the
        # ImageJ z 'spacing' when a real resolution unit is set.
        unit = tags.get("ResolutionUnit")
        if unit is not None and int(unit) != 1 and len(spatial) >= 2:
            for name, idx in (("YResolution", -2), ("XResolution", -1)):
                res = tags.get(name)
                if res and res[0]:
                    spacing[idx] = float(res[1]) / float(res[0])
        if imagej and "spacing" in imagej and len(spatial) >= 3:
            spacing[-3] = float(imagej["spacing"])
    # Colour only from an explicit trailing samples axis (an RGB page), never from a slice count.
    rgb = axes.endswith("S") and data.shape[-1] in (3, 4)
    return data, _meta(p, "tiff", spacing, rgb=rgb, axes=axes)


# -------------------------------------------------------------------- PNG / JPEG
def _read_pil(p: Path) -> tuple[np.ndarray, dict[str, Any]]:
    from PIL import Image

    try:
        with Image.open(p) as im:
            check_pixels(im.size[::-1], str(p))
            im.load()
            fmt = (im.format or p.suffix.lstrip(".")).lower()
            # Gray+alpha and exotic colour modes become gray/RGB so downstream
            # code only sees 1, 3 or 4 channels; palette ('P') keeps its indices
            # because palette PNGs are commonly used for label masks.
            if im.mode == "LA":
                im = im.convert("L")
            elif im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                im = im.convert("RGB")
            data = np.array(im)
    except Image.DecompressionBombError as exc:   # over PIL's own limit, from the header
        raise ImageTooLarge(f"{p} is too large: {exc}") from None
    except ImageTooLarge:
        raise
    except Exception as exc:  # PIL raises UnidentifiedImageError, OSError, SyntaxError...
        raise _fail(p, exc) from exc
    axes = "YX" if data.ndim == 2 else "YXC"
    return data, _meta(p, fmt, (1.0, 1.0), rgb=data.ndim == 3, axes=axes)


# -------------------------------------------------------------------------- NIfTI
def _read_nifti(p: Path) -> tuple[np.ndarray, dict[str, Any]]:
    import nibabel as nib

    try:
        img = nib.load(str(p))
        check_pixels(img.shape[:3], str(p))
        # np.asarray(dataobj) applies scl_slope/inter but keeps integer dtypes
        # when unscaled (get_fdata would always give float64).
        data = np.asarray(img.dataobj)
        zooms = img.header.get_zooms()
        codes = nib.aff2axcodes(img.affine)
    except ImageTooLarge:
        raise
    except Exception as exc:  # ImageFileError, EOFError, zlib/gzip errors...
        raise _fail(p, exc) from exc
    n_spatial = min(data.ndim, 3)
    spacing = tuple(float(z) for z in zooms[:n_spatial])
    affine = np.asarray(img.affine, dtype=float).tolist()
    # 'axes' holds the anatomical direction each voxel axis points to, e.g. "RAS".
    axes = "".join(str(c) for c in codes[:n_spatial])
    return data, _meta(p, "nifti", spacing, affine=affine, axes=axes)


# -------------------------------------------------------------------------- DICOM
def _rescale(frames: list[np.ndarray], datasets: list[Any]) -> np.ndarray:
    slopes = [float(getattr(ds, "RescaleSlope", 1) or 1) for ds in datasets]
    inters = [float(getattr(ds, "RescaleIntercept", 0) or 0) for ds in datasets]
    stack = np.stack(frames)
    if all(s == 1 for s in slopes) and all(i == 0 for i in inters):
        return stack
    s = np.asarray(slopes).reshape((-1,) + (1,) * (stack.ndim - 1))
    i = np.asarray(inters).reshape(s.shape)
    out = stack.astype(np.float64) * s + i
    # Integer slope/intercept (typical CT -> HU) stay integer so masks and
    # thresholds behave exactly; otherwise float32.
    if all(v.is_integer() for v in slopes + inters):
        lo, hi = out.min(), out.max()
        for dt in (np.int16, np.int32):
            if np.iinfo(dt).min <= lo and hi <= np.iinfo(dt).max:
                return out.astype(dt)
    return out.astype(np.float32)


def _pixel_spacing(ds: Any) -> tuple[float, float]:
    ps = getattr(ds, "PixelSpacing", None) or getattr(ds, "ImagerPixelSpacing", None)
    if ps is not None and len(ps) >= 2:
        return float(ps[0]), float(ps[1])
    return 1.0, 1.0


def _orientation(ds: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    iop = getattr(ds, "ImageOrientationPatient", None)
    if iop is None or len(iop) != 6:
        return None
    row = np.asarray([float(v) for v in iop[:3]])
    col = np.asarray([float(v) for v in iop[3:]])
    return row, col, np.cross(row, col)


def _affine(ds: Any, spacing: tuple[float, float, float], normal: np.ndarray) -> list | None:
    """Voxel (slice, row, col) -> RAS mm affine, as a NIfTI writer would want it."""
    orient = _orientation(ds)
    ipp = getattr(ds, "ImagePositionPatient", None)
    if orient is None or ipp is None:
        return None
    row_cos, col_cos, _ = orient
    aff = np.eye(4)
    aff[:3, 0] = normal * spacing[0]
    aff[:3, 1] = col_cos * spacing[1]  # moving down a row follows the column cosine
    aff[:3, 2] = row_cos * spacing[2]
    aff[:3, 3] = [float(v) for v in ipp]
    aff[:2, :] *= -1  # DICOM is LPS, NIfTI/nibabel is RAS
    return aff.tolist()


def _read_dicom_file(p: Path) -> tuple[np.ndarray, dict[str, Any]]:
    import pydicom

    try:
        ds = pydicom.dcmread(str(p))
        check_pixels(_dicom_dims(ds), str(p))
        data = _rescale([ds.pixel_array], [ds])[0]
    except ImageTooLarge:
        raise
    except Exception as exc:  # InvalidDicomError, missing pixel handlers, ...
        raise _fail(p, exc) from exc
    rs, cs = _pixel_spacing(ds)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1 and data.ndim >= 3:
        dz = getattr(ds, "SpacingBetweenSlices", None) or getattr(ds, "SliceThickness", None)
        return data, _meta(p, "dicom", (float(dz or 1.0), rs, cs), rgb=data.ndim == 4, axes="ZYX")
    axes = "YX" if data.ndim == 2 else "YXC"
    return data, _meta(p, "dicom", (rs, cs), rgb=data.ndim == 3, axes=axes)


def _dicom_dims(ds: Any, slices: int = 1) -> list[int]:
    """Spatial size from the header (frames or slices x rows x columns), before decoding pixels."""
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1) * slices
    return [frames, int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0)]


def _read_dicom_series(folder: Path) -> tuple[np.ndarray, dict[str, Any]]:
    import pydicom

    datasets = []
    for f in sorted(folder.iterdir()):
        if f.name.startswith(".") or not f.is_file():
            continue
        try:
            ds = pydicom.dcmread(str(f))
        except Exception:
            continue  # non-DICOM side files (README, thumbnails) are ignored
        if "PixelData" in ds:  # skips DICOMDIR and other non-image objects
            datasets.append(ds)
    if not datasets:
        raise _fail(folder, "folder contains no readable DICOM image files")
    series = {str(getattr(ds, "SeriesInstanceUID", "")) for ds in datasets}
    if len(series) > 1:
        raise _fail(folder, f"folder contains {len(series)} DICOM series; "
                            "put each series in its own folder")

    orient = _orientation(datasets[0])
    positions = [getattr(ds, "ImagePositionPatient", None) for ds in datasets]
    proj = None
    if orient is not None and all(pos is not None for pos in positions):
        normal = orient[2]
        proj = [float(np.dot(normal, [float(v) for v in pos])) for pos in positions]
        order = np.argsort(proj, kind="stable")
    else:
        normal = np.array([0.0, 0.0, 1.0])
        order = np.argsort([int(getattr(ds, "InstanceNumber", 0) or 0) for ds in datasets],
                           kind="stable")
    datasets = [datasets[i] for i in order]
    check_pixels(_dicom_dims(datasets[0], len(datasets)), str(folder))

    try:
        frames = [ds.pixel_array for ds in datasets]
    except Exception as exc:
        raise _fail(folder, exc) from exc
    shapes = {fr.shape for fr in frames}
    if len(shapes) > 1:
        raise _fail(folder, f"slices have different shapes {sorted(shapes)}")
    data = _rescale(frames, datasets)

    dz = None
    if proj is not None and len(proj) > 1:
        steps = np.diff(np.sort(proj))
        if np.all(steps > 0):
            dz = float(np.median(steps))
    if dz is None:
        ds0 = datasets[0]
        dz = float(getattr(ds0, "SpacingBetweenSlices", None)
                   or getattr(ds0, "SliceThickness", None) or 1.0)
    rs, cs = _pixel_spacing(datasets[0])
    spacing = (dz, rs, cs)
    extra: dict[str, Any] = {"axes": "ZYX" if data.ndim == 3 else "ZYXC",
                             "n_slices": len(datasets)}
    affine = _affine(datasets[0], spacing, normal)
    if affine is not None:
        extra["affine"] = affine
    return data, _meta(folder, "dicom", spacing, rgb=data.ndim == 4, **extra)
