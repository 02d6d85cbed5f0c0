"""Train a click head (the shipped one lives in src/promptseg/weights/click_head) on data here.

The shipped weights come from an earlier version of this script (fewer Colin27 slices and
structures, no pseudo objects, objects drawn uniformly; their config.json records the run).
The wider data and the balanced sampling below were measured against them and not shipped,
nor were the shipped head fine-tuned on them (``--init``) or other sampling shares (``--share``).

Training views, class-agnostic:
- Colin27 slices in the three planes, away from the prompt dev set's slices (and, sagittal,
  their mirror images), with every AAL region and every coarse brain class on them as objects,
  except the cerebellar ones; half the slices again flipped or turned, with another contrast;
- MoNuSeg ``train`` crops at native resolution, their nuclei as objects;
- pseudo objects on every view: Felzenszwalb regions of the view's input (SAM's data-engine
  idea: any coherent region is an object a click may point at).
Left out of training, to check that new data needs no new training: the cerebellar classes and
the stardist (fluorescence) nuclei. Embeddings are cached as .npy files in ``--cache``.

    python scripts/train_click_head.py --cache /tmp/click-cache --out src/promptseg/weights/click_head
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from promptseg.bench.aal import MRICRON, plane_view
from promptseg.bench.prompt_data import CEREBELLAR, SLICES, brain_targets
from promptseg.inference.spatial import medsam_input
from promptseg.io.normalise import hwc_view
from promptseg.model.backbones.litemedsam import TILE, LiteMedSAMBackbone
from promptseg.fsutil import file_sha256
from promptseg.model.click_head import load_click_head, save_click_head
from promptseg.training.click_head import ClickTrainConfig, ClickView, train_click_head, view_masks

STEP, AWAY = 0.04, 0.06      # slice fractions every STEP, at least AWAY from a dev slice
CROPS_PER_IMAGE, MAX_NUCLEI, MAX_OBJECTS, MAX_PSEUDO = 3, 40, 80, 24
LEFT_OUT = CEREBELLAR + ("cerebelum",)      # AAL's own spelling of its cerebellar regions


def train_slices() -> dict[str, tuple[float, ...]]:
    """Slice fractions per plane away from the dev set's (and their mirror images, sagittal)."""
    out = {}
    for plane, dev in SLICES.items():
        near = list(dev) + ([1 - f for f in dev] if plane == "sagittal" else [])
        fr = np.round(np.arange(0.08, 0.93, STEP), 3)
        out[plane] = tuple(float(f) for f in fr if all(abs(f - d) >= AWAY for d in near))
    return out


def _fine_aal(templates: Path) -> tuple[np.ndarray, dict[int, str]]:
    import nibabel as nib

    aal = np.asarray(nib.load(str(templates / "aal.nii.gz")).dataobj).astype(np.int64)
    names = {}
    for line in (templates / "aal.nii.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2:
            names[int(parts[0])] = parts[1]
    return aal, names


def _largest(m: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(m)
    return m if n <= 1 else lab == 1 + int(np.argmax(ndimage.sum(m, lab, range(1, n + 1))))


def _augment(img: np.ndarray, masks: list[np.ndarray], rng: np.random.Generator):
    """A flip or quarter turn and a gamma change of the image, the same turn of the masks."""
    k, flip = int(rng.integers(0, 4)), bool(rng.integers(0, 2))

    def turn(a):
        a = np.rot90(a, k)
        return np.ascontiguousarray(a[:, ::-1] if flip or k == 0 else a)

    gamma = float(rng.uniform(0.6, 1.5))
    out = np.round(255 * (turn(img).astype(np.float32) / 255) ** gamma).astype(np.uint8)
    return out, [turn(m) for m in masks]


def brain_views(rng: np.random.Generator):
    aal, names = _fine_aal(MRICRON)
    keep = [i for i, n in names.items() if not any(c in n.lower() for c in LEFT_OUT)]
    for k, (name, img, targets) in enumerate(brain_targets(MRICRON, train_slices(), min_area=40)):
        plane, i = name[:-4].split("_")[1], int(name[:-4].split("_")[2])
        fine = plane_view(aal, plane, i)
        masks = [m for tname, m, _ in targets if not any(c in tname for c in LEFT_OUT)]
        masks += [p for p in (_largest(fine == j) for j in keep if (fine == j).sum() >= 30) if p.sum() >= 30]
        if len(masks) > MAX_OBJECTS:
            masks = [masks[j] for j in sorted(rng.choice(len(masks), MAX_OBJECTS, replace=False))]
        if masks:
            yield name[:-4], img, (0, 0, *img.shape[:2]), masks, "anatomy"
            if k % 2 == 0:
                aug, amasks = _augment(img, masks, rng)
                yield name[:-4] + "_aug", aug, (0, 0, *aug.shape[:2]), amasks, "anatomy"


def monuseg_views(root: Path, rng: np.random.Generator):
    with (root / "captions.csv").open(newline="", encoding="utf-8") as fh:
        names = [r["image"] for r in csv.DictReader(fh) if r["split"].strip().lower() == "train"]
    for n in names:
        img = np.asarray(Image.open(root / "images" / n).convert("RGB"))
        mask = np.asarray(Image.open(root / "masks" / n))
        mask = (mask[..., 0] if mask.ndim == 3 else mask) > 0
        h, w = mask.shape
        for k in range(CROPS_PER_IMAGE):
            r0, c0 = int(rng.integers(0, h - TILE)), int(rng.integers(0, w - TILE))
            lab, num = ndimage.label(mask[r0:r0 + TILE, c0:c0 + TILE])
            border = set(np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))) - {0}
            ids = [i for i in range(1, num + 1) if i not in border and (lab == i).sum() >= 30]
            ids = rng.permutation(ids)[:MAX_NUCLEI]
            if len(ids):
                full = [np.pad(lab == i, ((r0, h - r0 - TILE), (c0, w - c0 - TILE))) for i in ids]
                yield f"{Path(n).stem}_{k}", img, (r0, c0, r0 + TILE, c0 + TILE), full, "nuclei"


def pseudo_objects(x: torch.Tensor, scale: float, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """(N, 256, 256) Felzenszwalb regions of the view input ``x`` inside its image part, of
    sizes from a few grid cells to a third of the image, not dark background."""
    from skimage.segmentation import felzenszwalb

    h, w = max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))
    pix = x[0].permute(1, 2, 0).numpy()[:h, :w]
    out = []
    for s in (60.0, 250.0, 1000.0):
        seg = felzenszwalb(pix, scale=s, sigma=0.8, min_size=20)
        for j in np.unique(seg):
            m = _largest(seg == j)
            if 40 <= m.sum() <= h * w / 3 and pix[m].mean() > 0.05:
                out.append(m)
    if len(out) > MAX_PSEUDO:
        out = [out[j] for j in sorted(rng.choice(len(out), MAX_PSEUDO, replace=False))]
    full = np.zeros((len(out), TILE, TILE), bool)
    for j, m in enumerate(out):
        full[j, :h, :w] = m
    return full


def build_views(cache: Path, monuseg: Path, seed: int, pseudo: bool = True) -> list[ClickView]:
    cache.mkdir(parents=True, exist_ok=True)
    encoder = None
    aug_rng, crop_rng = np.random.default_rng(seed + 1), np.random.default_rng(seed)
    views = []
    for name, img, rect, masks, source in list(brain_views(aug_rng)) + list(monuseg_views(monuseg, crop_rng)):
        emb_file, mask_file, pseudo_file = (cache / f"{name}_{part}.npy" for part in ("emb", "masks", "pseudo"))
        x, scale = medsam_input(hwc_view(img), rect)
        r0, c0, r1, c1 = rect
        if emb_file.is_file() and mask_file.is_file():
            emb, vm = torch.from_numpy(np.load(emb_file)), np.load(mask_file)
        else:
            encoder = encoder or LiteMedSAMBackbone(pretrained=True).eval()
            with torch.no_grad():
                emb = encoder(x)[0].half()
            vm = view_masks([m[r0:r1, c0:c1] for m in masks], scale)
            np.save(emb_file, emb.numpy())
            np.save(mask_file, vm)
            print(f"embedded {name}: {len(vm)} objects", flush=True)
        if not pseudo_file.is_file():
            np.save(pseudo_file, pseudo_objects(x, scale, (r1 - r0, c1 - c0), np.random.default_rng(seed + len(views))))
        pm = np.load(pseudo_file)
        if pseudo and len(pm):
            vm = np.concatenate([vm, pm])
        views.append(ClickView(emb, vm, (source,) * (len(vm) - (len(pm) if pseudo else 0))
                               + ("pseudo",) * (len(pm) if pseudo else 0)))
    return views


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", required=True)
    ap.add_argument("--monuseg", default="/work/shared/data/monuseg")
    ap.add_argument("--out", default=None)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--pool", type=int, default=2, choices=(1, 2))
    ap.add_argument("--no-pseudo", action="store_true", help="leave the pseudo objects out")
    ap.add_argument("--uniform", action="store_true", help="draw objects uniformly, not balanced by kind and size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", default=None, metavar="DIR",
                    help="fine-tune the click head of DIR (its pool is kept) instead of starting afresh")
    ap.add_argument("--share", action="append", default=[], metavar="KIND=W",
                    help="relative sampling share of a source kind (anatomy, nuclei, pseudo); default equal")
    a = ap.parse_args()
    torch.set_num_threads(1)      # the head is small: more threads mostly wait on each other
    views = build_views(Path(a.cache), Path(a.monuseg), a.seed, pseudo=not a.no_pseudo)
    kinds = {}
    for v in views:
        for s in v.sources:
            kinds[s] = kinds.get(s, 0) + 1
    print(f"{len(views)} views, objects per kind: {kinds}", flush=True)
    if a.out:
        shares = {k: float(w) for k, w in (s.split("=", 1) for s in a.share)} or None
        init = load_click_head(a.init) if a.init else None
        cfg = ClickTrainConfig(steps=a.steps, batch=a.batch, lr=a.lr, seed=a.seed,
                               pool=init.pool if init else a.pool, balanced=not a.uniform, shares=shares)
        head = train_click_head(views, cfg, log=lambda s: print(s, flush=True), init=init)
        start = {"init_sha256": file_sha256(Path(a.init) / "model.safetensors")} if a.init else {}
        save_click_head(head, a.out, extra={"train": vars(cfg) | {"views": len(views), "objects": kinds} | start,
                                            "left_out": ["cerebellar classes", "stardist nuclei"]})
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
