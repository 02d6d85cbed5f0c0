"""A training round as its own process: ``promptseg train PROJECT`` (or ``python -m
promptseg.engine.round PROJECT``).

Prints one JSON object per line on stdout with an ``"event"`` key: ``start``, ``step``,
``eval``, ``checkpoint``, ``done`` or ``error``/``cancelled``. The new model version is
registered in the project only once its files are complete, so a killed round leaves the
previous model active. SIGTERM stops cleanly at the next step.

This round is supervised (stage 1) on the project's accepted labels, continuing from the
active model; the semi-supervised teacher-student round builds on this process contract.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def emit(event: str, **data) -> None:
    print(json.dumps({"event": event, "time": round(time.time(), 3), **data}, default=float), flush=True)


def run_round(project_dir: str, device: str = "cpu", max_steps: int = 200, val_fraction: float = 0.2,
              seed: int = 0) -> int:
    from ..model.checkpoint import load_checkpoint, save_checkpoint
    from ..model.segmenter import ModelConfig, PromptSegModel
    from ..model.text import TextEncoder
    from ..project import Project
    from .dataset import class_prompts, labelled_items
    from .embeddings import EmbeddingCache
    from .evaluate import per_class_dice, predict_labels, summarise
    from .stage1 import TrainConfig, train_stage1

    stop = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    proj = Project.open(project_dir)
    active = proj.active_model()
    if active:
        model, _, cache_t = load_checkpoint(proj.model_dir(active.version))
    else:
        model, cache_t = PromptSegModel(ModelConfig()), {}
    model.to(device)
    cache = EmbeddingCache(proj.root / "embeddings", model, device)
    items, classes = labelled_items(proj, cache, progress=lambda i, n, name: emit("embed", done=i, total=n, image=name))
    if not items:
        raise ValueError("no accepted labels in the project yet: accept (or seed with `promptseg init --masks`) "
                         "at least one label before training")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(items))
    n_val = int(round(len(items) * val_fraction)) if len(items) >= 5 else 0
    val, train = [items[i] for i in order[:n_val]], [items[i] for i in order[n_val:]]
    prompts = class_prompts(classes, TextEncoder(model.cfg.text_model, cache=cache_t))
    cfg = TrainConfig(steps=max_steps, seed=seed)
    round_id = proj.start_round({"stage": 1, "train": cfg.to_dict(), "labelled": len(train), "val": len(val),
                                 "parent": active.version if active else None})
    emit("start", round=round_id, config=cfg.to_dict(), labelled=len(train), val=len(val), classes=classes,
         parent=active.version if active else None, device=device)
    last = train_stage1(model, train, prompts, cfg, device=device, should_stop=lambda: stop["flag"],
                        on_step=lambda d: emit("step", **d) if d["step"] % 5 == 0 or d["step"] == cfg.steps else None)
    if stop["flag"]:
        proj.finish_round(round_id, "cancelled", {"steps": last.get("step", 0)})
        emit("cancelled", round=round_id, steps=last.get("step", 0))
        return 0
    metrics = {"loss": last.get("total")}
    if val:
        scores = []
        for it in val:
            lab = torch.where(it.labels < 0, 0, it.labels)
            emb, grid = it.emb, _grid_of(proj, it.name, model.tile)
            pred, _ = predict_labels(model, emb, grid, prompts.embs, prompts.laterality, device=device)
            gt = _untile(lab, grid, it.classes)
            scores.append(per_class_dice(pred, gt, len(classes)))
        s = summarise(scores, classes)
        metrics.update(val_dice=s["dice"], val_dice_per_class=s["per_class"])
        emit("eval", dice=s["dice"], per_class=s["per_class"])
    with tempfile.TemporaryDirectory(dir=proj.root / "models") as tmp:
        save_checkpoint(model, tmp, classes=classes, prompt_cache=prompts.as_cache(),
                        extra={"round": round_id, "metrics": metrics})
        emit("checkpoint", path=tmp)
        rec = proj.register_model(Path(tmp), config={"round": round_id, "train": cfg.to_dict()}, metrics=metrics,
                                  parent=active.version if active else None)
    proj.finish_round(round_id, "done", metrics, model_version=rec.version)
    emit("done", round=round_id, model_version=rec.version, metrics=metrics)
    return 0


def _grid_of(proj, name: str, tile: int):
    from ..io.tiling import make_grid

    h, w = proj.image(name).spatial_shape[:2]
    return make_grid(h, w, tile)


def _untile(labels: torch.Tensor, grid, classes: list[int]) -> np.ndarray:
    """Tile label maps (local ids) back to an (H, W) map of global class ids (+1)."""
    out = np.zeros((grid.height, grid.width), np.int64)
    lut = np.array([0] + [k + 1 for k in classes])
    for i, (y, x) in enumerate(grid.starts):
        hh, ww = min(grid.tile, grid.height - y), min(grid.tile, grid.width - x)
        out[y:y + hh, x:x + ww] = lut[labels[i, :hh, :ww].numpy()]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="promptseg train")
    ap.add_argument("project")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--max-steps", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    try:
        from ..predictor import resolve_device

        return run_round(a.project, resolve_device(a.device), a.max_steps, seed=a.seed)
    except Exception as exc:  # the parent process reads this line instead of a traceback
        emit("error", message=f"{type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
