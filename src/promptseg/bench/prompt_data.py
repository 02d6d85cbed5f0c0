"""The box/click dev set of `promptseg bench prompts`: one folder, any image, any target.

A folder holds ``images/`` (PNG), ``masks/`` (one binary PNG per target, > 0 = the target)
and ``targets.csv`` with the columns ``image,mask,target`` (the target's text prompt) and any
others (``group`` names a group for the per-group means). :func:`make_dev_set` builds it from
data here: Colin27 AAL structures (one hemisphere's largest piece) on axial, coronal and
sagittal slices, the bundled stardist nuclei instances and MoNuSeg ``val`` nuclei (connected
components of its masks). The cerebellar classes form their own group (``brain-cerebellar``),
as the nuclei do, so a method tuned on the others can be checked on them.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

from ..io.samples import sample_data_dir
from ..project import atomic_write_bytes
from .aal import MRICRON, load_volumes, plane_view

CEREBELLAR = ("cerebellum", "vermis")
SLICES = {"axial": (0.45,), "coronal": (0.45,), "sagittal": (0.35,)}
QUICK_SLICES = {"axial": (0.45,)}
CHECK_FIRST, CHECK_STEP = 0.06, 0.04   # the cerebellar check's slices: midway between the click head's training slices


@dataclass
class Target:
    image: str
    mask: str
    target: str
    extra: dict[str, str] = field(default_factory=dict)


def read_targets(folder: str | Path) -> list[Target]:
    """``targets.csv`` of a dev-set folder, checked: the columns and every file exist."""
    folder = Path(folder)
    path = folder / "targets.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a prompt dev set needs images/, masks/ and targets.csv")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    missing = {"image", "mask", "target"} - set(rows[0] if rows else {})
    if not rows or missing:
        raise ValueError(f"{path}: no rows, or missing columns {sorted(missing)} (need image, mask, target)")
    out = []
    for row in rows:
        for col, sub in (("image", "images"), ("mask", "masks")):
            if not (folder / sub / row[col]).is_file():
                raise FileNotFoundError(f"{path}: {sub}/{row[col]} does not exist")
        extra = {k: v for k, v in row.items() if k not in ("image", "mask", "target")}
        out.append(Target(row["image"], row["mask"], row["target"].strip(), extra))
    return out


def load_pair(folder: str | Path, t: Target) -> tuple[np.ndarray, np.ndarray]:
    folder = Path(folder)
    img = np.asarray(Image.open(folder / "images" / t.image))
    mask = np.asarray(Image.open(folder / "masks" / t.mask))
    if mask.ndim == 3:
        mask = mask[..., 0]
    if mask.shape != img.shape[:2]:
        raise ValueError(f"mask {t.mask} is {mask.shape}, its image {t.image} is {img.shape[:2]}")
    return img, mask > 0


def _largest_piece(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = ndimage.sum(mask, lab, range(1, n + 1))
    return lab == int(np.argmax(sizes)) + 1


def _hemisphere_volume(templates: Path) -> np.ndarray:
    """1 = left, 2 = right, 0 = midline/unlabelled, from the AAL label names (``_L``/``_R``)."""
    import nibabel as nib

    aal = np.asarray(nib.load(str(templates / "aal.nii.gz")).dataobj).astype(np.int64)
    lut = np.zeros(int(aal.max()) + 1, np.uint8)
    for line in (templates / "aal.nii.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and int(parts[0]) <= aal.max():
            lut[int(parts[0])] = 1 if parts[1].endswith("_L") else 2 if parts[1].endswith("_R") else 0
    return lut[aal]


def brain_targets(templates: Path, slices: dict[str, tuple[float, ...]], min_area: int):
    t1, labels, classes = load_volumes(templates)
    side = _hemisphere_volume(templates)
    lo, hi = float(t1.min()), float(t1.max())
    t8 = np.round((t1 - lo) / max(hi - lo, 1e-6) * 255).astype(np.uint8)
    for plane, fracs in slices.items():
        axis = {"axial": 2, "coronal": 1, "sagittal": 0}[plane]
        has = np.nonzero(labels.any(axis=tuple(a for a in range(3) if a != axis)))[0]
        for f in fracs:
            i = int(has[int(f * (len(has) - 1))])
            img, lab, sd = plane_view(t8, plane, i), plane_view(labels, plane, i), plane_view(side, plane, i)
            name = f"brain_{plane}_{i:03d}.png"
            targets = []
            for k, cls in enumerate(classes, start=1):
                for s, word in ((1, "left "), (2, "right "), (0, "")):
                    m = (lab == k) & (sd == s)
                    if m.sum() < min_area:
                        continue
                    piece = _largest_piece(m)
                    if piece.sum() >= min_area:
                        group = "brain-cerebellar" if cls in CEREBELLAR else "brain"
                        targets.append((f"{word}{cls}", piece, {"group": group, "plane": plane}))
            yield name, img, targets


def _instance_targets(images: list[tuple[str, np.ndarray, np.ndarray]], group: str, per_image: int,
                      min_area: int, seed: int):
    rng = np.random.default_rng(seed)
    for name, img, inst in images:
        ids = [i for i in np.unique(inst) if i > 0 and (inst == i).sum() >= min_area]
        pick = sorted(rng.choice(ids, size=min(per_image, len(ids)), replace=False).tolist()) if ids else []
        yield name, img, [("nucleus", _largest_piece(inst == i), {"group": group, "plane": ""}) for i in pick]


def _stardist_images() -> list[tuple[str, np.ndarray, np.ndarray]]:
    d = sample_data_dir() / "nuclei"
    return [(f"stardist_{p.stem}.png", np.asarray(Image.open(p)), np.asarray(Image.open(d / "instances" / p.name)))
            for p in sorted((d / "images").glob("*.png"))]


def _monuseg_images(root: Path, limit: int | None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    with (root / "captions.csv").open(newline="", encoding="utf-8") as fh:
        names = [r["image"] for r in csv.DictReader(fh) if r["split"].strip().lower() == "val"]
    out = []
    for n in names[:limit]:
        mask = np.asarray(Image.open(root / "masks" / n))
        inst, _ = ndimage.label((mask[..., 0] if mask.ndim == 3 else mask) > 0)
        out.append((f"monuseg_{Path(n).stem}.png", np.asarray(Image.open(root / "images" / n).convert("RGB")), inst))
    return out


def make_dev_set(out: str | Path, *, quick: bool = False, monuseg: str | Path | None = None,
                 templates: str | Path = MRICRON, seed: int = 0) -> Path:
    """Write the dev set (``quick``: a few targets per group, for CI) to ``out``; returns the
    path of its targets.csv. MoNuSeg is left out when its folder does not exist."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    sources = [brain_targets(Path(templates), QUICK_SLICES if quick else SLICES, min_area=40)]
    star = _stardist_images()[:1] if quick else _stardist_images()
    sources.append(_instance_targets(star, "stardist-nuclei", 3 if quick else 2, 20, seed))
    if monuseg is not None and (Path(monuseg) / "captions.csv").is_file():
        sources.append(_instance_targets(_monuseg_images(Path(monuseg), 1 if quick else None),
                                         "monuseg-nuclei", 2 if quick else 1, 30, seed))
    return _write_targets(out, sources, _quick_brain if quick else _spread_brain)


def make_cerebellar_check(out: str | Path, templates: str | Path = MRICRON) -> Path:
    """Write a larger left-out check of clicks to ``out``: every cerebellar structure (the
    classes no click training sees) on Colin27 slices in the three planes, midway between the
    click head's training slices and away from the dev set's; returns its targets.csv."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    return _write_targets(out, [_cerebellar_slices(Path(templates))])


def check_slices(first: float = CHECK_FIRST) -> dict[str, tuple[float, ...]]:
    """Slice fractions per plane every ``CHECK_STEP`` from ``first``, away from the dev set's."""
    fracs = np.round(np.arange(first, 0.95, CHECK_STEP), 3)
    return {p: tuple(float(f) for f in fracs if all(abs(f - d) > CHECK_STEP / 2 for d in dev))
            for p, dev in SLICES.items()}


def _cerebellar_slices(templates: Path):
    for name, img, targets in brain_targets(templates, check_slices(), min_area=40):
        yield name, img, [t for t in targets if t[2]["group"] == "brain-cerebellar"]


def _write_targets(out: Path, sources, pick_brain: Callable[[list], list] | None = None) -> Path:
    """Images, target masks and targets.csv of ``sources`` under ``out``; ``pick_brain`` chooses
    a brain slice's targets."""
    rows = []
    for source in sources:
        for name, img, targets in source:
            if pick_brain and targets and targets[0][2]["group"].startswith("brain"):
                targets = pick_brain(targets)
            if not targets:
                continue
            Image.fromarray(img).save(out / "images" / name)
            for j, (tname, m, extra) in enumerate(targets):
                mname = f"{Path(name).stem}_{j:03d}.png"
                Image.fromarray((m * 255).astype(np.uint8)).save(out / "masks" / mname)
                rows.append({"image": name, "mask": mname, "target": tname, **extra})
    lines = ["image,mask,target,group,plane"] + [
        ",".join(r[k] for k in ("image", "mask", "target", "group", "plane")) for r in rows]
    path = out / "targets.csv"
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))
    return path


def _spread_brain(targets: list, every: int = 4) -> list:
    """Every ``every``-th structure of a slice (sizes from lobes to nuclei), all cerebellar ones."""
    plain = [t for t in targets if t[2]["group"] == "brain"]
    return plain[::every] + [t for t in targets if t[2]["group"] != "brain"]


def _quick_brain(targets: list) -> list:
    """A few brain targets of different sizes, one cerebellar where the slice has one."""
    keep = [t for t in targets if t[0] in ("left thalamus", "right putamen", "left frontal lobe",
                                           "right caudate", "left temporal lobe")]
    cereb = [t for t in targets if t[2]["group"] == "brain-cerebellar"][:1]
    return keep[:2] + cereb
