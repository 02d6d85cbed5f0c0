"""Train the default checkpoint shipped in src/promptseg/weights/default/.

Stage 1 on every bundled sample (nuclei + brain), from LiteMedSAM's pretrained encoder and
decoder; the text projection, presence and grounding heads are what this adds. Usage:
    .venv/bin/python scripts/train_default.py [--steps 400] [--out DIR]
"""
from __future__ import annotations

import argparse
import shutil
import signal
import tempfile
import time
from pathlib import Path

import torch

from promptseg.training.dataset import class_prompts, make_item
from promptseg.inference.embeddings import EmbeddingCache, tile_pixels
from promptseg.training.ssl_config import TrainConfig
from promptseg.training.stage1 import train_stage1
from promptseg.io import list_samples, load_sample
from promptseg.model.checkpoint import load_checkpoint, save_checkpoint
from promptseg.model.segmenter import ModelConfig, PromptSegModel
from promptseg.model.text import TextEncoder

OUT = Path(__file__).resolve().parents[1] / "src" / "promptseg" / "weights" / "default"


def with_pixel_branch(model: PromptSegModel) -> PromptSegModel:
    """A copy of ``model`` with a new pixel branch; its zero last layer keeps the masks as they were."""
    cfg = ModelConfig.from_dict({**model.cfg.to_dict(), "pixel_branch": True})
    cfg.decoder.init_from_litemedsam = False
    grown = PromptSegModel(cfg)
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    missing = [k for k in missing if not k.startswith("pixel_branch.")]
    if missing or unexpected:
        raise ValueError(f"cannot grow the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return grown


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--version", default="default-3")
    ap.add_argument("--resume", action="store_true",
                    help="continue from the current default checkpoint (adding a zero-initialised pixel "
                         "branch if it has none, which leaves its masks unchanged until trained)")
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "promptseg-default-emb"))
    ap.add_argument("--out", default=str(OUT), help="checkpoint folder to write (default: the shipped one)")
    ap.add_argument("--branch-only", action="store_true",
                    help="train only the pixel branch; the rest of the model stays as it is")
    ap.add_argument("--no-pixel-branch", action="store_true",
                    help="leave out the full-resolution pixel branch (masks then follow the embedding grid)")
    a = ap.parse_args()
    torch.manual_seed(0)
    prior = 0
    out = Path(a.out)
    if a.resume and (OUT / "config.json").exists():
        model, cfg, _ = load_checkpoint(OUT)
        prior = int(cfg.get("steps", 0))
        if model.pixel_branch is None and not a.no_pixel_branch:
            model = with_pixel_branch(model)
    else:
        # the pixel branch lets mask edges follow the image rather than the embedding grid
        model = PromptSegModel(ModelConfig(pixel_branch=not a.no_pixel_branch))
    if a.branch_only:
        if model.pixel_branch is None:
            raise SystemExit("--branch-only needs a model with a pixel branch")
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("pixel_branch."))
    stop = {"flag": False}   # SIGTERM: finish the step in progress, then save what was trained
    signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    cache = EmbeddingCache(a.cache, model)
    samples = [load_sample(n) for n in list_samples()]
    classes = [c for s in samples for c in s.classes]
    items = []
    for s in samples:
        for it in s.items:
            emb, grid = cache.get(it.image)
            items.append(make_item(f"{s.name}/{it.name}", emb, grid, it.mask, s.classes, classes,
                                   tile_pixels(it.image, grid.tile)))
    text = TextEncoder()
    prompts = class_prompts(classes, text)
    t0 = time.time()
    last = train_stage1(model, items, prompts, TrainConfig(steps=a.steps, seed=prior), should_stop=lambda: stop["flag"],
                        on_step=lambda d: print(f"step {d['step']} loss {d['total']:.3f} at {time.time() - t0:.0f} s", flush=True) if d["step"] % 10 == 0 else None)
    done = last.get("step", 0)
    print(f"trained {done} steps in {time.time() - t0:.0f} s, last loss {last.get('total', float('nan')):.3f}")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_checkpoint(model, tmp, classes=classes, prompt_cache=prompts.as_cache(), half=True,
                    extra={"version": a.version, "trained_on": [s.name for s in samples], "steps": prior + done,
                           "pixel_branch_steps": done if model.pixel_branch is not None else 0})
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
