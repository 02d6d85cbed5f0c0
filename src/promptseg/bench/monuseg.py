"""`promptseg bench monuseg`: label efficiency on MoNuSeg-format data, baselines in the same run.

The labelled subset is a fixed-seed draw from the ``train`` rows; the other training images
are the unlabelled pool of the semi-supervised methods. Evaluation uses only the rows of
``eval_split``, which never enter training or model selection (the last weights are scored).
Embeddings are computed once per image and shared by every method; every prompt-model
method starts from the same initial weights for a given seed.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..inference.decode import predict_labels
from ..inference.embeddings import EmbeddingCache, embed_image, tile_pixels
from ..io.tiling import TileGrid
from ..model.segmenter import ModelConfig, PromptSegModel
from ..model.text import TextEncoder, load_prompt_cache, prompt_cache_file, save_prompt_cache
from ..training.dataset import class_prompts, make_item
from ..training.ssl_config import SSLConfig
from ..training.types import ClassPrompts, TrainItem
from .data import SegImage, by_split, dihedral_views, labelled_subset, load_seg_dir
from .finetune import FinetuneConfig, freeze_encoder, train_finetune
from .stain import donor_assignment, recolourings, stain_stats
from .methods import ALL_METHODS, FT_METHODS, PIXEL_METHODS, QUICK_METHODS, SSL_METHODS, STUDENT_METHODS, \
    parse_methods, progress_printer, train_prompt_model, uses_all_labels, uses_stain_views
from .metrics import binary_scores, mean_scores
from .pixel_methods import pixel_config, run_pixel_method
from .student import StudentRuns
from .report import bar_plot, markdown_table, run_environment, write_results

CLASS_NAME = "nucleus"


@dataclass
class MonusegConfig:
    data: str
    out: str = "bench-monuseg"
    labels: float = 0.25
    eval_split: str = "val"
    methods: list[str] = field(default_factory=lambda: list(ALL_METHODS))
    steps: int = 1500
    unet_steps: int | None = None      # steps of the pixel baselines (unet, litemedsam_ft); default: steps
    unet_batch: int = 8                # their crops per step
    unet_crop: int = 256               # the U-Net's crop and tile (litemedsam_ft: the encoder's tile)
    unet_width: int = 32               # the U-Net's first-level channels
    lmft_steps: int | None = None      # litemedsam_ft's own steps and crops per step (default: the U-Net's)
    lmft_batch: int | None = None
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    subset_seed: int = 0
    device: str = "cpu"
    cache: str | None = None           # embedding cache folder (default OUT/embeddings)
    crop: int | None = None            # prompt models' training crop in pixels (default 128)
    batch: int | None = None           # tiles per step, labelled and unlabelled each (default 2)
    label_jitter: float = SSLConfig.label_jitter   # photometric jitter of the labelled pixel crops
    views: int = 1                     # dihedral views of each training image, each embedded (1..8)
    stain_views: int = 0               # recolourings of each labelled image after unlabelled ones (stain.py)
    ft_batch: int = 8                  # whole tiles per step of the encoder-training methods
    ft_from_stage: int = 0             # >0: they train TinyViT from this stage on (bench/finetune.py)
    bf16: bool = False                 # encoder under bfloat16 autocast (CUDA only)
    quick: bool = False
    folds: int = 0                     # >1: cross-validation over the train and val rows (bench/folds.py)
    fold_ids: list[int] | None = None  # the folds to run (default: all)

    @classmethod
    def quick_defaults(cls, data: str, **kw) -> "MonusegConfig":
        base = dict(steps=200, unet_steps=300, unet_batch=2, unet_crop=192, unet_width=16, seeds=[0],
                    methods=list(QUICK_METHODS), quick=True)
        base.update({k: v for k, v in kw.items() if v is not None})
        return cls(data=data, **base)


@dataclass
class Prepared:
    ref: PromptSegModel                       # backbone shared by every prompt model
    embs: dict[str, tuple[torch.Tensor, TileGrid]]
    prompts: ClassPrompts
    pixels: dict[str, torch.Tensor]           # tiles' pixels, for a model with a pixel branch


def prepare(rows: list[SegImage], model_cfg: ModelConfig, cache_dir: str | Path, device: str,
            log: Callable[[str], None] = print, class_names: tuple[str, ...] = (CLASS_NAME,),
            bf16: bool = False) -> Prepared:
    """Embed every row once (disk cache) and encode the class prompts."""
    torch.manual_seed(0)
    ref = PromptSegModel(model_cfg).to(device)
    cache = EmbeddingCache(cache_dir, ref, device, bf16=bf16)
    embs, pixels = {}, {}
    t0 = time.time()
    for i, r in enumerate(rows):
        t1 = time.time()
        embs[r.name] = cache.get(r.image)
        pixels[r.name] = tile_pixels(r.image, ref.tile)
        log(f"  embedding {i + 1}/{len(rows)} {r.name} ({time.time() - t1:.1f} s)")
    log(f"embedded {len(rows)} images in {time.time() - t0:.0f} s")
    # The prompt embeddings live beside the image embeddings, so a machine without the text
    # encoder's weights (a GPU box that the 90 MB MiniLM cannot travel to) can run from the cache.
    prompt_file = prompt_cache_file(cache_dir, model_cfg.text_model)
    try:
        cached = load_prompt_cache(prompt_file, model_cfg.text_model)
    except ValueError as exc:  # recomputed like a corrupt image embedding, never trusted
        log(f"ignoring the prompt cache: {exc}")
        cached = {}
    text = TextEncoder(model_cfg.text_model, cache=cached)
    known = set(text.cache)
    prompts = class_prompts(list(class_names), text)
    if set(text.cache) != known:
        save_prompt_cache(prompt_file, text.cache, model_cfg.text_model)
    return Prepared(ref, embs, prompts, pixels)


def fresh_model(prep: Prepared, model_cfg: ModelConfig, seed: int, device: str) -> PromptSegModel:
    """The seed's initial weights, with the reference backbone (the one the cache embedded with)."""
    torch.manual_seed(seed)
    model = PromptSegModel(model_cfg)
    model.backbone.load_state_dict(prep.ref.backbone.state_dict())
    return model.to(device)


def stain_rows(labelled: list[SegImage], unlabelled: list[SegImage], k: int, seed: int = 0) -> dict[str, list[SegImage]]:
    """``k`` recolourings of each labelled image, each with the stain statistics of a different
    unlabelled training image (never an evaluation image)."""
    donors = {r.name: r for r in unlabelled}
    assign = donor_assignment([r.name for r in labelled], list(donors), k, seed)
    stats = {n: stain_stats(donors[n].image) for n in {d for ds in assign.values() for d in ds}}
    out = {}
    for r in labelled:
        images = recolourings(r.image, [stats[d] for d in assign[r.name]])
        out[r.name] = [SegImage(f"{r.name}@stain-{d}", r.split, r.caption, im, r.mask)
                       for d, im in zip(assign[r.name], images)]
    return out


def rows_trained_on(methods: list[str], train: list[SegImage], labelled: list[SegImage]) -> list[SegImage]:
    """The training rows whose embeddings ``methods`` (cached-embedding ones) train on."""
    if any(m in SSL_METHODS + STUDENT_METHODS or uses_all_labels(m) for m in methods):
        return train
    return labelled if methods else []


def item_of(r: SegImage, prep: Prepared) -> TrainItem:
    emb, grid = prep.embs[r.name]
    return make_item(r.name, emb, grid, r.mask, [CLASS_NAME], [CLASS_NAME], prep.pixels[r.name])


def predict_row(model: PromptSegModel, name: str, prep: Prepared, device: str,
                emb: tuple[torch.Tensor, TileGrid] | None = None) -> np.ndarray:
    """Label map of the prepared image ``name`` for the prepared prompts (``emb``: another
    embedding of it than the cached one)."""
    pred, _ = predict_labels(model, *(emb or prep.embs[name]), prep.prompts.embs, prep.prompts.laterality,
                             device=device, pixels=prep.pixels[name])
    return pred


def teacher_prob_of(model: PromptSegModel, prep: Prepared, device: str) -> Callable[[str], np.ndarray]:
    """``name`` -> the model's (H, W) foreground probability of that prepared image, computed once."""
    done: dict[str, np.ndarray] = {}

    def prob(name: str) -> np.ndarray:
        if name not in done:
            done[name] = predict_labels(model, *prep.embs[name], prep.prompts.embs, prep.prompts.laterality,
                                        device=device, pixels=prep.pixels[name])[1][0]
        return done[name]
    return prob


def score_prompt_model(model: PromptSegModel, rows: list[SegImage], prep: Prepared, device: str,
                       own_encoder: bool = False) -> list[dict]:
    """Per-image scores; ``own_encoder``: embed with the model's (trained) encoder, not the cache."""
    out = []
    for r in rows:
        pred = predict_row(model, r.name, prep, device, embed_image(model, r.image, device) if own_encoder else None)
        out.append({"image": r.name, **binary_scores(pred == 1, r.mask)})
    return out


def finetune_config(cfg: MonusegConfig, seed: int) -> FinetuneConfig:
    return FinetuneConfig(steps=cfg.steps, seed=seed, batch_tiles=cfg.ft_batch, from_stage=cfg.ft_from_stage,
                          views=cfg.views)


def unet_config(cfg: MonusegConfig, seed: int, method: str = "unet"):
    """The pixel baseline ``method``'s training settings for ``seed``."""
    steps, batch = cfg.unet_steps or cfg.steps, cfg.unet_batch
    if method == "litemedsam_ft":
        steps, batch = cfg.lmft_steps or steps, cfg.lmft_batch or batch
    return pixel_config(method, steps, batch, cfg.unet_crop, cfg.unet_width, seed)


def run_monuseg(cfg: MonusegConfig, model_cfg: ModelConfig | None = None,
                log: Callable[[str], None] = print, rows: list[SegImage] | None = None) -> dict:
    """Run every method for every seed; writes OUT/results.json (after each method), results.md
    and OUT/monuseg_dice.png. Returns the results.json content. ``rows``: the images with the
    splits to use, instead of ``cfg.data``'s (a cross-validation fold, bench/folds.py)."""
    model_cfg = model_cfg or ModelConfig()
    methods = parse_methods(",".join(cfg.methods), ALL_METHODS)
    if not methods:
        raise ValueError("no method left to run")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = load_seg_dir(cfg.data) if rows is None else rows
    if cfg.stain_views and set(methods) & set(FT_METHODS):
        raise ValueError("--stain-views works with the frozen-encoder methods only, not with "
                         + ", ".join(sorted(set(methods) & set(FT_METHODS))))
    if cfg.eval_split == "train":
        raise ValueError("--eval-split must not be the training split")
    train, evals = by_split(rows, "train"), by_split(rows, cfg.eval_split)
    if not evals:
        raise ValueError(f"no rows with split {cfg.eval_split!r} in {cfg.data}/captions.csv")
    labelled_names = labelled_subset([r.name for r in train], cfg.labels, cfg.subset_seed)
    labelled = [r for r in train if r.name in labelled_names]
    unlabelled = [r for r in train if r.name not in labelled_names]
    assert not {r.name for r in train} & {r.name for r in evals}, "evaluation images leaked into training"
    log(f"MoNuSeg bench: {len(train)} train ({len(labelled)} labelled = {cfg.labels:.0%}), "
        f"{len(evals)} {cfg.eval_split} for evaluation; methods {', '.join(methods)}; seeds {cfg.seeds}; "
        f"{cfg.steps} steps; device {cfg.device}")
    config = {**asdict(cfg), "methods": methods, "prompt": CLASS_NAME,
              "n_train": len(train), "labelled_images": labelled_names,
              "unlabelled_images": [r.name for r in unlabelled], "eval_images": [r.name for r in evals],
              "captions": {r.name: r.caption for r in rows}, "model": model_cfg.to_dict(),
              **{m: unet_config(cfg, 0, m).to_dict() for m in PIXEL_METHODS if m in methods},
              **({"finetune": finetune_config(cfg, 0).to_dict()} if set(methods) & set(FT_METHODS) else {}),
              "metric_note": "per-image foreground Dice / IoU averaged over eval images; *_224: pred and GT "
                             "resized to 224x224 (nearest) first", **run_environment(cfg.device)}
    t0 = time.time()
    # Only the images some method trains on are embedded (views of the unlabelled pool cost
    # minutes each on a CPU); views are of training images only, never of evaluation images.
    cached = [m for m in methods if m not in FT_METHODS + PIXEL_METHODS]   # methods on the reference's embeddings
    two_stage = [m.removeprefix("ft+") for m in methods if m.startswith("ft+")]
    used = rows_trained_on(cached, train, labelled)
    views = {r.name: dihedral_views(r, cfg.views) for r in rows_trained_on(cached + two_stage, train, labelled)}
    stained = stain_rows(labelled, unlabelled, cfg.stain_views, cfg.subset_seed) \
        if cfg.stain_views and any(uses_stain_views(m) for m in cached) else {}
    prep = prepare([v for r in used for v in views[r.name]] + [v for vs in stained.values() for v in vs] + evals,
                   model_cfg, cfg.cache or out / "embeddings", cfg.device, log, bf16=cfg.bf16)
    config["embed_seconds"] = round(time.time() - t0, 1)
    config["stain_donors"] = {n: [v.name.split("@stain-")[1] for v in vs] for n, vs in stained.items()}
    items = {r.name: [item_of(v, prep) for v in views[r.name]] for r in used}
    stain_items = {n: [item_of(v, prep) for v in vs] for n, vs in stained.items()}
    results: list[dict] = []

    def train_cached(method: str, model: PromptSegModel, lab: list[SegImage], by_name: dict, seed: int, tag: str):
        unl = [it for r in unlabelled for it in by_name[r.name]] if method in SSL_METHODS else []
        extra = [it for r in lab for it in stain_items.get(r.name, [])] if uses_stain_views(method) else []
        train_prompt_model(method, model, [it for r in lab for it in by_name[r.name]] + extra, unl, prep.prompts,
                           cfg.steps,
                           seed, cfg.device, on_step=progress_printer(tag, cfg.steps, log),
                           crop_px=cfg.crop, batch=cfg.batch, label_jitter=cfg.label_jitter)

    students = StudentRuns()
    for seed in cfg.seeds:
        base = fresh_model(prep, model_cfg, seed, cfg.device)
        teachers: dict[str, tuple[PromptSegModel, float]] = {}   # the promptseg model, trained once

        def teacher(tag: str) -> tuple[PromptSegModel, float]:
            if "model" not in teachers:
                t = time.time()
                m = copy.deepcopy(base)
                train_cached("promptseg", m, labelled, items, seed, tag)
                teachers["model"] = (m, time.time() - t)
            return teachers["model"]
        tuned: dict[int, tuple[PromptSegModel, float]] = {}   # fine-tuned once per labelled set, shared

        def finetuned(rows: list[SegImage], tag: str) -> tuple[PromptSegModel, float]:
            if len(rows) not in tuned:
                t = time.time()
                m = copy.deepcopy(base)
                train_finetune(m, rows, prep.prompts, finetune_config(cfg, seed), cfg.device,
                               on_step=progress_printer(tag + " encoder", cfg.steps, log), log=log)
                tuned[len(rows)] = (freeze_encoder(m), time.time() - t)
            m, sec = tuned[len(rows)]
            return copy.deepcopy(m), sec

        for method in methods:
            tag = f"[{method} seed {seed}]"
            log(f"{tag} training")
            t1 = time.time()
            lab = train if uses_all_labels(method) else labelled
            n_lab, steps = len(lab), cfg.steps
            if method in PIXEL_METHODS:
                ucfg = unet_config(cfg, seed, method)
                per_image, train_s = run_pixel_method(method, ucfg, labelled, evals, cfg.device, log, tag)
                steps = ucfg.steps
            elif method in STUDENT_METHODS:
                t_model, t_s = teacher(tag + " teacher")
                prob = teacher_prob_of(t_model, prep, cfg.device)
                per_image, train_s, extra = students.score(method, unet_config(cfg, seed, "unet"), labelled,
                                                           unlabelled, evals, prob, cfg.device, log, tag)
                steps, train_s = unet_config(cfg, seed, "unet").steps, train_s + t_s
            elif method in FT_METHODS:
                model, train_s = finetuned(lab, tag)
                if method.startswith("ft+"):   # then a cached-embedding method on the tuned encoder
                    inner = method.removeprefix("ft+")
                    t2 = time.time()
                    rows = rows_trained_on([inner], train, labelled)
                    own_rows = [v for r in rows for v in views[r.name]]
                    own = Prepared(model, {v.name: embed_image(model, v.image, cfg.device) for v in own_rows},
                                   prep.prompts, {**prep.pixels, **{v.name: tile_pixels(v.image, model.tile)
                                                                    for v in own_rows}})
                    own_items = {r.name: [item_of(v, own) for v in views[r.name]] for r in rows}
                    train_cached(inner, model, lab, own_items, seed, tag)
                    train_s += time.time() - t2
                    steps = 2 * cfg.steps
                per_image = score_prompt_model(model, evals, prep, cfg.device, own_encoder=True)
                del model
            elif method == "promptseg":
                model, train_s = teacher(tag)
                per_image = score_prompt_model(model, evals, prep, cfg.device)
            else:
                model = copy.deepcopy(base)
                train_cached(method, model, lab, items, seed, tag)
                train_s = time.time() - t1
                per_image = score_prompt_model(model, evals, prep, cfg.device)
                del model
            res = {"method": method, "seed": seed, **mean_scores(per_image), "seconds": round(time.time() - t1, 1),
                   "train_seconds": round(train_s, 1), "steps": steps, "labelled": n_lab, "per_image": per_image,
                   **(extra if method in STUDENT_METHODS else {})}
            results.append(res)
            write_results(out, results, config)
            log(f"{tag} Dice {100 * res['dice']:.2f}  mIoU {100 * res['miou']:.2f}  Dice224 "
                f"{100 * res['dice_224']:.2f}  ({res['seconds']:.0f} s)")
    config["seconds"] = round(time.time() - t0, 1)
    write_results(out, results, config)
    title = (f"MoNuSeg, {cfg.labels:.0%} labels ({len(labelled)}/{len(train)} train images), "
             f"{cfg.eval_split} split ({len(evals)} images){' — CPU --quick' if cfg.quick else ''}")
    table = markdown_table(results, title=title)
    (out / "results.md").write_text(table, encoding="utf-8")
    bar_plot(results, out / "monuseg_dice.png", title)
    log("\n" + table)
    return {"results": results, "config": config}


def seeds_arg(text: str | None) -> list[int] | None:
    return None if not text else [int(s) for s in text.split(",") if s.strip()]


def labels_arg(text: str) -> float:
    v = float(text)
    if not 0 < v <= 1:
        raise ValueError(f"--labels must be a fraction in (0, 1], got {text}")
    return v

