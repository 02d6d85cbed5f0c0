"""npe2 reader/writer contributions for NIfTI, DICOM and label masks.

Pure functions on top of :mod:`promptseg.io`; napari itself is not imported,
so these stay importable (and testable) without Qt.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from promptseg.io import has_dicom_files, read_image, write_labels

LayerData = tuple[Any, dict[str, Any], str]
PathOrPaths = str | list[str]

# napari reads TIFF/PNG itself; we only claim the formats it cannot open.
_READ_SUFFIXES = (".nii", ".nii.gz", ".dcm")


def _single_path(path: PathOrPaths) -> str | None:
    if isinstance(path, (list, tuple)):
        return str(path[0]) if len(path) == 1 else None
    return str(path)


def _layer_name(p: Path) -> str:
    name = p.name
    for suf in (".nii.gz", ".nii", ".dcm"):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return name


def get_reader(path: PathOrPaths) -> Callable[[PathOrPaths], list[LayerData]] | None:
    """Return :func:`read_layers` for NIfTI/DICOM paths or DICOM folders, else None."""
    single = _single_path(path)
    if single is None:
        return None
    p = Path(single)
    if p.name.lower().endswith(_READ_SUFFIXES):
        return read_layers
    if p.is_dir() and has_dicom_files(p):
        return read_layers
    return None


def read_layers(path: PathOrPaths) -> list[LayerData]:
    """Read one image file / DICOM series folder into napari layer data tuples."""
    paths = [path] if isinstance(path, str) else [str(p) for p in path]
    layers: list[LayerData] = []
    for one in paths:
        data, meta = read_image(one)
        spacing = tuple(float(s) for s in meta["spacing"])
        metadata = {"affine": meta.get("affine"), "source": meta["source"], "spacing": spacing}
        kwargs: dict[str, Any] = {"name": _layer_name(Path(one)), "metadata": metadata}
        # napari's scale needs one value per array axis; channels get no spacing,
        # so only pass it when every axis is spatial.
        # Colour only as the reader says: a 3- or 4-slice volume is not RGB(A).
        kwargs["rgb"] = bool(meta.get("rgb"))
        if len(spacing) == data.ndim - (1 if kwargs["rgb"] else 0):
            kwargs["scale"] = spacing
        layers.append((data, kwargs, "image"))
    return layers


def write_labels_layer(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer for Labels: .nii/.nii.gz/.tif/.tiff."""
    meta = meta or {}
    io_meta: dict[str, Any] = {}
    scale = meta.get("scale")
    if scale is not None:
        io_meta["spacing"] = tuple(float(s) for s in scale)
    layer_meta = meta.get("metadata") or {}
    if layer_meta.get("affine") is not None:
        io_meta["affine"] = layer_meta["affine"]
    write_labels(path, np.asarray(data), io_meta)
    return [path]
