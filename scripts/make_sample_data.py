#!/usr/bin/env python
"""Rebuild sample_data/ from its upstream sources (deterministic, no network).

Sources (see sample_data/README.md for licences):
  * nuclei: ``stardist/data/images/img2d.tif`` + ``mask2d.tif`` from the PyPI
    ``stardist`` wheel (DSB2018 image); install with ``pip install --no-deps stardist``.
  * brain: Colin27 T1 ``ch2.nii.gz`` and the AAL atlas ``aal.nii.gz`` from the
    Debian/Ubuntu package ``mricron-data`` (/usr/share/mricron/templates).

Usage: python scripts/make_sample_data.py [--out sample_data]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
from pathlib import Path

import nibabel as nib
import nibabel.openers
import numpy as np
import tifffile
from PIL import Image

MRICRON = Path("/usr/share/mricron/templates")
N_AXIAL = 24
VOLUME_BUDGET = int(2.5 * 1024 * 1024)  # bytes for the two NIfTI volumes together

# Coarse classes in id order (1..N). Each AAL name maps by prefix; the first
# matching rule wins, and every AAL label must match exactly one rule.
BRAIN_CLASSES = [
    "frontal lobe", "temporal lobe", "parietal lobe", "occipital lobe", "insula",
    "cingulate gyrus", "hippocampus", "amygdala", "thalamus", "caudate", "putamen",
    "pallidum", "cerebellum", "vermis",
]
AAL_RULES: list[tuple[str, str]] = [
    # Frontal: motor strip, all Frontal_*, opercular/olfactory/gyrus rectus and the
    # paracentral lobule (mostly frontal, conventionally grouped there).
    ("Precentral", "frontal lobe"), ("Frontal_", "frontal lobe"),
    ("Rolandic_Oper", "frontal lobe"), ("Supp_Motor_Area", "frontal lobe"),
    ("Olfactory", "frontal lobe"), ("Rectus", "frontal lobe"),
    ("Paracentral_Lobule", "frontal lobe"),
    # Temporal incl. the medial-temporal parahippocampal and the fusiform gyri, so
    # that "hippocampus" stays the hippocampus proper.
    ("Temporal_", "temporal lobe"), ("Heschl", "temporal lobe"),
    ("ParaHippocampal", "temporal lobe"), ("Fusiform", "temporal lobe"),
    ("Postcentral", "parietal lobe"), ("Parietal_", "parietal lobe"),
    ("SupraMarginal", "parietal lobe"), ("Angular", "parietal lobe"),
    ("Precuneus", "parietal lobe"),
    ("Occipital_", "occipital lobe"), ("Calcarine", "occipital lobe"),
    ("Cuneus", "occipital lobe"), ("Lingual", "occipital lobe"),
    ("Insula", "insula"), ("Cingulum_", "cingulate gyrus"),
    ("Hippocampus", "hippocampus"), ("Amygdala", "amygdala"),
    ("Thalamus", "thalamus"), ("Caudate", "caudate"), ("Putamen", "putamen"),
    ("Pallidum", "pallidum"), ("Cerebelum_", "cerebellum"), ("Vermis_", "vermis"),
]


def to_uint8(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    lo, hi = a.min(), a.max()
    return np.zeros(a.shape, np.uint8) if hi <= lo else np.round((a - lo) / (hi - lo) * 255).astype(np.uint8)


def save_png(path: Path, a: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # optimize=True gives smaller files; PNG output is deterministic for fixed input.
    Image.fromarray(a).save(path, optimize=True)


def make_nuclei(out: Path) -> None:
    spec = importlib.util.find_spec("stardist")  # locate files without importing TF deps
    if spec is None or spec.origin is None:
        raise SystemExit("stardist not installed: pip install --no-deps stardist")
    data = Path(spec.origin).parent / "data" / "images"
    img = tifffile.imread(data / "img2d.tif")
    inst = tifffile.imread(data / "mask2d.tif")
    assert img.shape == inst.shape == (512, 512), (img.shape, inst.shape)
    img8 = to_uint8(img)  # scaled over the whole 512x512 image, not per tile
    for k, (r, c) in enumerate([(0, 0), (0, 256), (256, 0), (256, 256)]):
        name = f"nuclei_{k:02d}.png"
        tile = (slice(r, r + 256), slice(c, c + 256))
        ids = inst[tile]
        # Renumber instances 1..n per tile so ids are compact.
        _, relabel = np.unique(ids, return_inverse=True)
        relabel = relabel.reshape(ids.shape).astype(np.uint16)
        if ids.min() != 0:
            relabel += 1
        save_png(out / "images" / name, img8[tile])
        save_png(out / "masks" / name, (ids > 0).astype(np.uint8))
        save_png(out / "instances" / name, relabel)
    (out / "classes.json").write_text(json.dumps({"classes": ["nucleus"]}, indent=2) + "\n")


def aal_mapping() -> tuple[dict[int, int], dict[str, str]]:
    names: dict[int, str] = {}
    for line in (MRICRON / "aal.nii.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2:
            names[int(parts[0])] = parts[1]
    id_map: dict[int, int] = {}
    name_map: dict[str, str] = {}
    for aal_id, aal_name in sorted(names.items()):
        matches = [cls for prefix, cls in AAL_RULES if aal_name.startswith(prefix)]
        if len(set(matches)) != 1:
            raise SystemExit(f"AAL label {aal_name} matches classes {matches}; fix AAL_RULES")
        name_map[aal_name] = matches[0]
        id_map[aal_id] = BRAIN_CLASSES.index(matches[0]) + 1
    return id_map, name_map


def axial_view(vol: np.ndarray, z: int) -> np.ndarray:
    """RAS volume slice -> radiological axial view: anterior up, patient right on the left."""
    return np.ascontiguousarray(vol[::-1, ::-1, z].T)


def make_brain(out: Path) -> None:
    t1_img = nib.load(str(MRICRON / "ch2.nii.gz"))
    aal_img = nib.load(str(MRICRON / "aal.nii.gz"))
    if nib.aff2axcodes(t1_img.affine) != ("R", "A", "S") or not np.allclose(t1_img.affine, aal_img.affine):
        raise SystemExit("expected ch2 and aal on the same RAS grid")
    t1 = np.asarray(t1_img.dataobj)
    aal = np.asarray(aal_img.dataobj)
    id_map, name_map = aal_mapping()
    lut = np.zeros(int(aal.max()) + 1, np.uint8)
    for aal_id, cls in id_map.items():
        lut[aal_id] = cls
    coarse = lut[aal]

    # Axial slices evenly spaced over the z range covered by the atlas (the brain),
    # staying one voxel inside so the extreme slices are not nearly empty.
    zs = np.nonzero(coarse.any(axis=(0, 1)))[0]
    z_lo, z_hi = int(zs.min()), int(zs.max())
    for z in np.unique(np.round(np.linspace(z_lo + 1, z_hi - 1, N_AXIAL)).astype(int)):
        name = f"axial_z{z:03d}.png"
        save_png(out / "images" / name, to_uint8(axial_view(t1, z)))
        save_png(out / "masks" / name, axial_view(coarse, z))

    # Cropped volume pair, only when it fits the size budget.
    nz = np.nonzero(coarse)
    lo = [max(int(a.min()) - 2, 0) for a in nz]
    hi = [min(int(a.max()) + 3, s) for a, s in zip(nz, coarse.shape)]
    crop = tuple(slice(a, b) for a, b in zip(lo, hi))
    affine = t1_img.affine.copy()
    affine[:3, 3] = t1_img.affine[:3, :3] @ np.asarray(lo) + t1_img.affine[:3, 3]
    vol_dir = out / "volume"
    # nibabel gzips at level 1 by default; level 9 keeps the pair as small as possible.
    nibabel.openers.Opener.default_compresslevel = 9
    vol_dir.mkdir(parents=True, exist_ok=True)
    for arr, fname, intent in ((t1[crop], "ch2_coarse.nii.gz", "none"),
                               (coarse[crop], "labels_coarse.nii.gz", "label")):
        img = nib.Nifti1Image(np.ascontiguousarray(arr), affine)
        img.set_data_dtype(np.uint8)
        img.header.set_xyzt_units("mm")
        img.header.set_intent(intent)
        img.set_qform(affine, code=1)
        img.set_sform(affine, code=1)
        nib.save(img, str(vol_dir / fname))
    vol_size = sum(f.stat().st_size for f in vol_dir.iterdir())
    if vol_size > VOLUME_BUDGET:
        print(f"volume pair is {vol_size / 1e6:.2f} MB > budget; not exported")
        shutil.rmtree(vol_dir)

    (out / "classes.json").write_text(
        json.dumps({"classes": BRAIN_CLASSES, "aal_to_class": name_map}, indent=2) + "\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "sample_data")
    args = ap.parse_args()
    for name, fn in (("nuclei", make_nuclei), ("brain", make_brain)):
        target = args.out / name
        if target.exists():
            shutil.rmtree(target)  # rebuild from scratch so stale slices never linger
        target.mkdir(parents=True)
        fn(target)
    total = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"wrote {args.out} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
