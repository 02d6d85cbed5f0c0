"""Fill a project from folders of image and mask files (``promptseg init``).

Every input is read and checked before the project is touched, and every problem is reported
at once; adding is idempotent, so running it twice neither duplicates images nor gold labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ProjectError
from .paths import check_name
from .records import spatial_shape
from .store import DB_NAME, Project

__all__ = ["FolderPlan", "check_inputs", "create_from_images", "plan_folder", "seed_project", "stem"]


def stem(path: Path) -> str:
    """The image name a file gets: its name up to the first dot (``a.nii.gz`` -> ``a``)."""
    return path.name.split(".")[0]


def _read(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    from ..io import read_image

    data, meta = read_image(path)
    return np.asarray(data), meta


def _mask_labels(mask: np.ndarray, meta: dict[str, Any], n_classes: int) -> np.ndarray:
    """A mask file's array as label values 0..n_classes (ValueError when it cannot be)."""
    if meta.get("rgb"):   # a colour-saved mask: its first channel holds the values
        mask = mask[..., 0]
    if mask.dtype.kind == "f":
        if not np.all(np.isfinite(mask)) or np.any(mask != np.round(mask)):
            raise ValueError("holds non-integer values")
        mask = mask.astype(np.int64)
    elif mask.dtype.kind not in "biu":
        raise ValueError(f"has the non-numeric dtype {mask.dtype}")
    lab = (mask > 0).astype(np.uint8) if n_classes == 1 else mask.astype(np.int64)
    lo, hi = (int(lab.min()), int(lab.max())) if lab.size else (0, 0)
    if lo < 0 or hi > n_classes:
        raise ValueError(f"has values {lo}..{hi} but only {n_classes} class(es) were given")
    return lab


def check_inputs(images: list[Path], masks: dict[str, Path], classes: list[str]) -> list[str]:
    """Every problem with the inputs, one line each (empty: all can be added)."""
    problems: list[str] = []
    seen: dict[str, Path] = {}
    for path in images:
        name = stem(path)
        try:
            check_name(name)
        except ProjectError as exc:
            problems.append(f"{path}: {exc}")
            continue
        if name in seen:
            problems.append(f"{path}: the name {name!r} is also that of {seen[name].name}; rename one")
            continue
        seen[name] = path
        try:
            img, meta = _read(path)
        except (ValueError, OSError) as exc:
            problems.append(str(exc) if str(path) in str(exc) else f"{path}: {exc}")
            continue
        if img.ndim < 2 or img.size == 0:
            problems.append(f"{path}: not an image (shape {img.shape})")
            continue
        shape = spatial_shape(img.shape, bool(meta.get("rgb")))
        del img
        mask_path = masks.get(name)
        if mask_path is None:
            continue
        try:
            mask, mmeta = _read(mask_path)
            lab = _mask_labels(mask, mmeta, len(classes))
        except (ValueError, OSError) as exc:
            problems.append(f"mask {mask_path}: {exc}")
            continue
        if lab.shape != shape:
            problems.append(f"mask {mask_path}: shape {lab.shape} differs from its image's {shape} ({path.name})")
    return problems


def seed_project(project: Project, images: list[Path], masks: dict[str, Path], classes: list[str],
                 labelled: int | None = None) -> tuple[int, int]:
    """Add the (checked) images, and gold labels from the masks of the first ``labelled`` of
    them (all when None); -> (images in the project, images seeded with this gold label)."""
    for c in classes:
        project.add_class(c)
    seeded = 0
    for path in images:
        img, meta = _read(path)
        spacing = tuple(meta.get("spacing") or ()) or None
        rec = project.add_image(img, name=stem(path), spacing=spacing, rgb=bool(meta.get("rgb")))
        del img
        mask_path = masks.get(rec.name)
        if mask_path is None or (labelled is not None and seeded >= labelled):
            continue
        mask, mmeta = _read(mask_path)
        lab = _mask_labels(mask, mmeta, len(classes))
        latest = project.latest_label(rec, ("gold",))
        if latest is not None:   # a second run: the same gold label is not stored again
            old, old_classes = project.read_label(latest)
            if old_classes == [project.add_class(c).name for c in classes] and np.array_equal(old, lab):
                seeded += 1
                continue
        project.save_label(rec, lab, classes, "gold")
        seeded += 1
    return len(project.images()), seeded


@dataclass(frozen=True)
class FolderPlan:
    """What opening ``root`` as a project would do, decided before anything is written:
    ``open`` an existing project, ``create`` a new one, ``create-from-images`` (a new project
    filled with the image files already in the folder), or ``invalid`` (``problem`` says why)."""
    root: Path
    action: str
    images: tuple[Path, ...] = ()
    problem: str = ""


def plan_folder(path: str | Path) -> FolderPlan:
    """Look at ``path`` without changing anything."""
    from ..io import SUPPORTED_SUFFIXES

    root = Path(path).expanduser().absolute()
    if (root / DB_NAME).exists():
        return FolderPlan(root, "open")
    if root.exists() and not root.is_dir():
        return FolderPlan(root, "invalid", problem=f"{root} is a file, not a folder")
    if not root.exists():
        return FolderPlan(root, "create")
    images = tuple(p for p in sorted(root.iterdir()) if p.is_file() and p.name.lower().endswith(SUPPORTED_SUFFIXES))
    return FolderPlan(root, "create-from-images" if images else "create", images)


def create_from_images(plan: FolderPlan) -> tuple[Project, list[str]]:
    """Create the project ``plan`` describes and add the folder's readable images to it;
    -> (the open project, one line per image file that was left out and why)."""
    problems = check_inputs(list(plan.images), {}, [])
    good = [p for p in plan.images if not any(str(p) in line for line in problems)]
    project = Project.create(plan.root)
    try:
        seed_project(project, good, {}, [])
    except BaseException:
        project.close()
        raise
    return project, problems
