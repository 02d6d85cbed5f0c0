"""`promptseg bench more-like-this`: one-shot segmentation from a few gold instances.

Two settings on the evaluation split of a MoNuSeg-format folder (bench/data.py):
- same image: a few gold instances of an image are the exemplars; Dice over the whole image;
- cross image: a few gold instances of a `train` image are the exemplars for each evaluated image.
Exemplars are random connected components of the gold mask (fixed seeds), large enough not to be
fragments. With ``baseline`` the same exemplars also go through the decoder's exemplar tokens
(prompt "nucleus"), the route before this one, in the same run.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..inference.more_like_this import Exemplars, match_exemplars, pixel_features
from ..project import atomic_write_json
from .data import SegImage, by_split, load_seg_dir
from .report import run_environment

MIN_EXEMPLAR_AREA = 30   # px: smaller gold components are cut-off fragments, not whole nuclei


@dataclass
class MoreLikeThisConfig:
    data: str
    out: str = "bench-more-like-this"
    split: str = "val"
    n_exemplars: int = 5
    seeds: int = 3              # exemplar draws per image in the same-image setting
    n_train: int | None = None  # train images used as cross-image exemplar sources (None: all)
    max_images: int | None = None
    crop: int | None = None     # evaluate on the top-left crop×crop of each image (quick runs)
    baseline: bool = True
    prompt: str = "nucleus"


def pick_exemplars(mask: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` random gold instances (connected components of ``mask``) as one binary mask."""
    from scipy import ndimage as ndi

    lab, k = ndi.label(mask > 0)
    area = np.bincount(lab.ravel())[1:]
    ok = np.flatnonzero(area >= MIN_EXEMPLAR_AREA) + 1
    if len(ok) < n:
        raise ValueError(f"only {len(ok)} gold instances of at least {MIN_EXEMPLAR_AREA} px, {n} asked for")
    return np.isin(lab, np.random.default_rng(seed).choice(ok, n, replace=False))


def dice(pred: np.ndarray, gold: np.ndarray) -> float:
    p, g = pred > 0, gold > 0
    denom = p.sum() + g.sum()
    return 1.0 if denom == 0 else float(2 * (p & g).sum() / denom)


def _crop(row: SegImage, size: int | None) -> SegImage:
    if size is None:
        return row
    return SegImage(row.name, row.split, row.caption, row.image[:size, :size], row.mask[:size, :size])


def _token_baseline(predictor, row: SegImage, exemplar_mask: np.ndarray, prompt: str) -> float:
    """Dice of the decoder's exemplar-token route with the same exemplars (one vector each)."""
    from scipy import ndimage as ndi

    predictor.set_image(row.image)
    lab, k = ndi.label(exemplar_mask)
    vecs = np.stack([predictor.exemplar_vector(lab == i) for i in range(1, k + 1)])
    r = predictor.predict([prompt], exemplars={prompt: vecs})
    return dice(r.labels, row.mask)


def run_more_like_this(cfg: MoreLikeThisConfig) -> dict:
    rows = load_seg_dir(cfg.data)
    evals = [_crop(r, cfg.crop) for r in by_split(rows, cfg.split)][:cfg.max_images]
    sources = [_crop(r, cfg.crop) for r in by_split(rows, "train")][:cfg.n_train]
    if not evals or not sources:
        raise ValueError(f"{cfg.data}: need images in the {cfg.split!r} and 'train' splits")
    predictor = None
    if cfg.baseline:
        from ..inference.predictor import Predictor

        predictor = Predictor.load(None, device="cpu")
    feats = {r.name: pixel_features(r.image) for r in evals}
    fit_s, match_s, per_image = [], [], []
    source_ex = []
    for src in sources:
        t0 = time.perf_counter()
        ex = Exemplars.from_masks(src.image, pick_exemplars(src.mask, cfg.n_exemplars, 0))
        ex.weights()
        fit_s.append(time.perf_counter() - t0)
        source_ex.append(ex)
    for row in evals:
        same, base = [], []
        for seed in range(cfg.seeds):
            exm = pick_exemplars(row.mask, cfg.n_exemplars, seed)
            t0 = time.perf_counter()
            ex = Exemplars.from_masks(row.image, exm, features=feats[row.name])
            m = match_exemplars(row.image, ex, features=feats[row.name])
            match_s.append(time.perf_counter() - t0)
            same.append(dice(m.mask, row.mask))
            if predictor is not None:
                base.append(_token_baseline(predictor, row, exm, cfg.prompt))
        cross = [dice(match_exemplars(row.image, ex, features=feats[row.name]).mask, row.mask) for ex in source_ex]
        per_image.append({"image": row.name, "same_image_dice": statistics.mean(same),
                          "cross_image_dice": statistics.mean(cross), "cross_image_min": min(cross),
                          "token_baseline_dice": statistics.mean(base) if base else None})
    summary = {
        "same_image_dice": statistics.mean(r["same_image_dice"] for r in per_image),
        "cross_image_dice": statistics.mean(r["cross_image_dice"] for r in per_image),
        "token_baseline_dice": (statistics.mean(r["token_baseline_dice"] for r in per_image) if cfg.baseline else None),
        "latency_s_p50": {"exemplars_and_match_same_image": statistics.median(match_s),
                          "features_and_fit_per_exemplar_set": statistics.median(fit_s)},
        "n_images": len(evals), "n_train_sources": len(sources),
    }
    doc = {"summary": summary, "per_image": per_image, "config": asdict(cfg), "environment": run_environment("cpu")}
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "results.json", doc)
    (out / "results.md").write_text(markdown(doc), encoding="utf-8")
    return doc


def markdown(doc: dict) -> str:
    s, c = doc["summary"], doc["config"]
    base = s["token_baseline_dice"]
    lines = [f"# More like this ({c['n_exemplars']} gold instances as exemplars, split {c['split']})", "",
             f"{s['n_images']} images; cross-image exemplars from {s['n_train_sources']} train images; "
             f"{c['seeds']} exemplar draws per image" + (f"; crops of {c['crop']} px" if c["crop"] else ""), "",
             "| setting | Dice |", "|---|---|",
             f"| same image | {100 * s['same_image_dice']:.1f} |",
             f"| exemplars from a train image | {100 * s['cross_image_dice']:.1f} |"]
    if base is not None:
        lines.append(f"| decoder exemplar tokens, same exemplars (baseline) | {100 * base:.1f} |")
    lat = s["latency_s_p50"]
    lines += ["", f"Latency p50: exemplars + match on one image {1000 * lat['exemplars_and_match_same_image']:.0f} ms; "
              f"features + fit of one exemplar set {1000 * lat['features_and_fit_per_exemplar_set']:.0f} ms.", "",
              "| image | same image | cross image (mean) | cross image (min) | baseline |", "|---|---|---|---|---|"]
    for r in doc["per_image"]:
        b = "" if r["token_baseline_dice"] is None else f"{100 * r['token_baseline_dice']:.1f}"
        lines.append(f"| {r['image']} | {100 * r['same_image_dice']:.1f} | {100 * r['cross_image_dice']:.1f} | "
                     f"{100 * r['cross_image_min']:.1f} | {b} |")
    return "\n".join(lines) + "\n"
