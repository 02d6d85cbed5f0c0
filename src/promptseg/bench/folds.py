"""Cross-validation of `promptseg bench monuseg` over the ``train`` and ``val`` rows together.

The rows are dealt into K folds (fixed seed, independent of file order); each fold in turn is
the evaluation set and the other rows are that fold's training images, of which the usual
fraction is labelled and the rest is the unlabelled pool. Every method runs on every fold in
the same run, with one embedding cache shared by all folds. The table gives each method's
mean ± standard deviation across folds (a fold's score: its mean over seeds) and its
difference to ``supervised`` fold by fold.
"""
from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..model.segmenter import ModelConfig
from .data import load_seg_dir
from .monuseg import MonusegConfig, run_monuseg
from .report import run_environment, write_results

CV_SPLITS = ("train", "val")


def cv_folds(names: list[str], k: int, seed: int = 0) -> list[list[str]]:
    """``k`` disjoint folds (sizes differ by at most one) covering ``names``, each sorted."""
    pool = sorted(set(names))
    if not 2 <= k <= len(pool):
        raise ValueError(f"--folds must be between 2 and the number of images ({len(pool)}), got {k}")
    perm = np.random.default_rng(seed).permutation(len(pool))
    return [sorted(pool[i] for i in perm[f::k]) for f in range(k)]


def fold_scores(results: list[dict], score: str = "dice") -> dict[str, dict[int, float]]:
    """method -> fold -> the mean of ``score`` over that fold's seeds."""
    acc: dict[str, dict[int, list[float]]] = {}
    for r in results:
        acc.setdefault(r["method"], {}).setdefault(r["fold"], []).append(r[score])
    return {m: {f: float(np.mean(v)) for f, v in sorted(by.items())} for m, by in acc.items()}


def _mean_sd(values: list[float], sign: str = "") -> str:
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{100 * np.mean(values):{sign}.2f} ± {100 * sd:.2f}"


def cv_table(results: list[dict], title: str) -> str:
    """Markdown: per method, Dice mean ± sd across folds, each fold, and Δ to ``supervised``."""
    scores = fold_scores(results)
    base = scores.get("supervised", {})
    lines = [f"**{title}**", "", "| method | folds | Dice (mean ± sd over folds) | per fold | Δ vs supervised |",
             "|---|---|---|---|---|"]
    for method, by in scores.items():
        shared = [f for f in by if f in base]
        delta = "-" if method == "supervised" or not shared else _mean_sd([by[f] - base[f] for f in shared], "+")
        per = ", ".join(f"{100 * v:.2f}" for v in by.values())
        lines.append(f"| {method} | {len(by)} | {_mean_sd(list(by.values()))} | {per} | {delta} |")
    return "\n".join(lines) + "\n"


def margin_line(results: list[dict], method: str = "promptseg", rivals: tuple[str, ...] = ("unet", "litemedsam_ft"),
                need: float = 0.015) -> str:
    """Issue 26's comparison: ``method`` minus the stronger of ``rivals`` on each fold both ran
    (mean ± sd over those folds), against the margin ``need``; empty when either side is missing."""
    scores = fold_scores(results)
    ours, theirs = scores.get(method, {}), [scores[r] for r in rivals if r in scores]
    shared = [f for f in ours if theirs and all(f in t for t in theirs)]
    if not shared:
        return ""
    diffs = [ours[f] - max(t[f] for t in theirs) for f in shared]
    names = " and ".join(r for r in rivals if r in scores)
    verdict = "met" if np.mean(diffs) >= need else "not met"
    return (f"\n{method} − the stronger of {names}, fold by fold over {len(shared)} fold(s): "
            f"{_mean_sd(diffs, '+')} (target ≥ +{100 * need:.1f}: {verdict})\n")


def run_monuseg_cv(cfg: MonusegConfig, model_cfg: ModelConfig | None = None,
                   log: Callable[[str], None] = print) -> dict:
    """Run the bench on each fold (OUT/foldF/), then write OUT/results.json and OUT/results.md
    with every fold's results and the cross-validation table. Returns the results.json content."""
    rows = [r for r in load_seg_dir(cfg.data) if r.split in CV_SPLITS]
    folds = cv_folds([r.name for r in rows], cfg.folds, cfg.subset_seed)
    ids = list(range(cfg.folds)) if cfg.fold_ids is None else list(cfg.fold_ids)
    bad = [f for f in ids if not 0 <= f < cfg.folds]
    if bad or not ids or len(set(ids)) != len(ids):
        raise ValueError(f"--fold-ids must name distinct folds in 0..{cfg.folds - 1}, got {ids}")
    out = Path(cfg.out)
    cache = cfg.cache or str(out / "embeddings")
    results: list[dict] = []
    config = {**asdict(cfg), "cache": cache, "folds_images": folds, "cv_splits": list(CV_SPLITS),
              **run_environment(cfg.device)}
    for f in ids:
        held = set(folds[f])
        fold_rows = [replace(r, split="val" if r.name in held else "train") for r in rows]
        log(f"fold {f + 1}/{cfg.folds}: {len(held)} evaluation images")
        fcfg = replace(cfg, out=str(out / f"fold{f}"), cache=cache, eval_split="val", folds=0, fold_ids=None)
        res = run_monuseg(fcfg, model_cfg, log, rows=fold_rows)
        results += [{**r, "fold": f} for r in res["results"]]
        write_results(out, results, config)
    n_lab = sorted({r["labelled"] for r in results if r["method"] == "supervised"})
    title = (f"MoNuSeg {cfg.folds}-fold cross-validation over {len(rows)} train + val images, "
             f"{cfg.labels:.0%} of each fold's training images labelled ({'/'.join(map(str, n_lab)) or '?'}), "
             f"folds {','.join(map(str, ids))}")
    table = cv_table(results, title) + margin_line(results)
    (out / "results.md").write_text(table, encoding="utf-8")
    log("\n" + table)
    return {"results": results, "config": config}
