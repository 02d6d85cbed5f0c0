"""`promptseg demo`: the whole annotate -> retrain loop, headless, on bundled sample data.

A simulated annotator labels a couple of slices, the model is trained, proposals are made
for the next slices, "corrected" to ground truth (recording how much had to change) and
accepted, and the model is retrained. Dice is measured on held-out slices every round.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..inference.decode import predict_labels
from ..inference.embeddings import EmbeddingCache, tile_pixels
from ..io import load_sample
from ..model.checkpoint import save_checkpoint
from ..model.segmenter import ModelConfig, PromptSegModel
from ..model.text import TextEncoder
from ..project import Project, atomic_write_json
from ..training.dataset import class_prompts, labelled_items
from ..training.evaluate import per_class_dice, summarise
from ..training.stage1 import TrainConfig, train_stage1
from .accept import accept
from .schedule import AnnotatorSchedule

DEMO_SCHEDULE = AnnotatorSchedule(rounds=4, per_round=3, initial=2, steps_first=150, steps_per_round=100)
QUICK_DEMO_SCHEDULE = AnnotatorSchedule(rounds=3, per_round=4, initial=2, steps_first=120, steps_per_round=80)


@dataclass
class DemoConfig:
    sample: str = "brain"
    schedule: AnnotatorSchedule = field(default_factory=lambda: DEMO_SCHEDULE)
    eval_every: int = 3        # every n-th slice is held out for evaluation
    seed: int = 0

    @classmethod
    def quick(cls) -> "DemoConfig":
        return cls(schedule=QUICK_DEMO_SCHEDULE)


def run_demo(out: str | Path, cfg: DemoConfig, device: str = "cpu", model_cfg: ModelConfig | None = None,
             log: Callable[[str], None] = print) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    sample = load_sample(cfg.sample)
    held_out = sample.items[::cfg.eval_every]
    pool = spread_order([it for i, it in enumerate(sample.items) if i % cfg.eval_every])
    proj_dir = out / "project"
    if proj_dir.exists():
        shutil.rmtree(proj_dir)  # the demo always starts from an empty project
    project = Project.create(proj_dir, name=f"demo-{cfg.sample}")
    truth = {}
    for it in pool:
        project.add_image(it.image, name=it.name)
        truth[it.name] = it.mask
    for c in sample.classes:
        project.add_class(c)
    log(f"project {proj_dir}: {len(pool)} images to annotate, {len(held_out)} held out, "
        f"{len(sample.classes)} classes: {', '.join(sample.classes)}")

    torch.manual_seed(cfg.seed)
    model = PromptSegModel(model_cfg or ModelConfig()).to(device)
    cache = EmbeddingCache(project.embeddings_dir, model, device)
    text = TextEncoder(model.cfg.text_model)
    prompts = class_prompts(sample.classes, text)
    for name, e in zip(sample.classes, prompts.embs):
        project.set_class_embedding(name, e.pooled, model.cfg.text_model)
    t0 = time.time()
    cache.warm([(it.name, it.image) for it in sample.items],
               lambda i, n, name: log(f"  embedding {i}/{n} {name}") if i in (1, n) or i % 8 == 0 else None)
    log(f"embedded {len(sample.items)} images in {time.time() - t0:.1f} s ({model.cfg.backbone})")
    eval_embs = [(*cache.get(it.image), tile_pixels(it.image, model.tile)) for it in held_out]

    for it in pool[:cfg.schedule.initial]:
        project.save_label(it.name, it.mask, sample.classes, "gold", prompt="; ".join(sample.classes))
    rounds = []
    version = None
    for r in range(cfg.schedule.rounds):
        edits = []
        if r > 0:  # propose on the next images, "correct" them, accept
            todo = project.unlabelled_images()[:cfg.schedule.per_round]
            for rec in todo:
                image = project.read_image(rec)
                emb, grid = cache.get(image, rec.sha256)
                proposal, _ = predict_labels(model, emb, grid, prompts.embs, prompts.laterality, device=device,
                                             pixels=tile_pixels(image, grid.tile))
                # the simulated annotator corrects the proposal to the ground truth and accepts it
                done = accept(project, image, rec.name, proposal, truth[rec.name], sample.classes, version)
                edits.append(done.label.edited_fraction)
        items, _ = labelled_items(project, cache)
        steps = cfg.schedule.steps(r)
        tcfg = TrainConfig(steps=steps, seed=cfg.seed + r)
        round_id = project.start_round({"stage": 1, "train": tcfg.to_dict(), "labelled": len(items)})
        t0 = time.time()
        loss = train_stage1(model, items, prompts, tcfg, device=device)
        train_s = time.time() - t0
        scores = []
        for (emb, grid, pixels), it in zip(eval_embs, held_out):
            pred, _ = predict_labels(model, emb, grid, prompts.embs, prompts.laterality, device=device, pixels=pixels)
            scores.append(per_class_dice(pred, it.mask, len(sample.classes)))
        summary = summarise(scores, sample.classes)
        with tempfile.TemporaryDirectory(dir=project.root) as tmp:
            save_checkpoint(model, tmp, classes=sample.classes, prompt_cache=prompts.as_cache(), extra={"version": f"demo-round-{r}"})
            rec = project.register_model(Path(tmp), config={"round": r, "train": tcfg.to_dict()},
                                         metrics={"val_dice": summary["dice"]}, parent=version)
        version = rec.version
        project.finish_round(round_id, "done", {"val_dice": summary["dice"], "loss": loss.get("total")},
                             model_version=version)
        row = {"round": r, "labelled": len(items), "dice": round(summary["dice"], 4),
               "edited_fraction": round(float(np.mean(edits)), 4) if edits else None,
               "train_seconds": round(train_s, 1), "model_version": version, "per_class": summary["per_class"]}
        rounds.append(row)
        log(f"round {r}: {len(items):2d} labelled  val Dice {summary['dice']:.3f}"
            + (f"  edited {row['edited_fraction']:.3f}" if edits else "") + f"  ({train_s:.0f} s training)")
    report = {"sample": cfg.sample, "device": device, "backbone": model.cfg.backbone, "rounds": rounds,
              "held_out": [it.name for it in held_out], "seconds": round(time.time() - t_start, 1),
              "project": str(proj_dir)}
    atomic_write_json(out / "report.json", report)
    project.close()
    return report


def spread_order(items: list) -> list:
    """Reorder so every prefix covers the list evenly (0, n/2, n/4, 3n/4, ...): the simulated
    annotator labels slices spread through the volume, as a person would."""
    n = len(items)
    order, seen = [], set()
    step = n
    while len(order) < n:
        for i in range(0, n, max(1, step)):
            j = min(n - 1, i + max(1, step) // 2) if step > 1 else i
            for cand in (j, i):
                if cand not in seen:
                    seen.add(cand)
                    order.append(cand)
        step //= 2
    return [items[i] for i in order]


def format_table(report: dict) -> str:
    lines = ["| round | labelled | val Dice | edited fraction |", "|---|---|---|---|"]
    for r in report["rounds"]:
        ef = "-" if r["edited_fraction"] is None else f"{r['edited_fraction']:.3f}"
        lines.append(f"| {r['round']} | {r['labelled']} | {r['dice']:.3f} | {ef} |")
    return "\n".join(lines)
