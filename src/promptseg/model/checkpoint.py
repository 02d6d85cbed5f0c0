"""Checkpoints: ``model.safetensors`` + ``config.json``. Never pickle.

A frozen pretrained backbone is not stored; the config records its SHA-256 and loading
re-reads it from its package and checks the hash. Prompt embeddings of the checkpoint's
classes are stored too, so a machine without the text encoder weights can still decode.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..fsutil import atomic_path, file_sha256
from .segmenter import ModelConfig, PromptSegModel
from .text import TextEmbedding, prompt_cache_from, prompt_cache_tensors

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def save_checkpoint(model: PromptSegModel, out_dir: str | Path, *, classes: list[str] | None = None,
                    prompt_cache: dict[str, TextEmbedding] | None = None,
                    extra: dict[str, Any] | None = None, half: bool = False) -> Path:
    """Write the checkpoint folder (each file atomically). Returns the folder.
    ``half`` stores float16 weights (half the size; loaded back as float32)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if half else torch.float32
    tensors = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
               for k, v in model.trainable_state_dict().items()}
    prompt_tensors, prompt_entries = prompt_cache_tensors(prompt_cache or {})
    tensors.update(prompt_tensors)
    with atomic_path(out / WEIGHTS) as tmp:
        save_file(tensors, str(tmp))
    cfg = {
        "format_version": FORMAT_VERSION,
        "model": model.cfg.to_dict(),
        "backbone_sha256": getattr(model.backbone, "weights_sha256", None),
        "classes": list(classes or []),
        "prompt_cache": prompt_entries,
        "weights_sha256": file_sha256(out / WEIGHTS),
        **(extra or {}),
    }
    with atomic_path(out / CONFIG) as tmp:
        tmp.write_text(json.dumps(cfg, indent=2, sort_keys=True))
    return out


def read_config(ckpt_dir: str | Path) -> dict[str, Any]:
    path = Path(ckpt_dir) / CONFIG
    try:
        cfg = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{ckpt_dir} is not a promptseg checkpoint (no {CONFIG})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"corrupt checkpoint config {path}: {exc}") from None
    if cfg.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"checkpoint {ckpt_dir} needs a newer promptseg (format {cfg['format_version']})")
    return cfg


def load_checkpoint(ckpt_dir: str | Path, device: str | torch.device = "cpu"
                    ) -> tuple[PromptSegModel, dict[str, Any], dict[str, TextEmbedding]]:
    """Load a checkpoint folder -> (model in eval mode, config, prompt embedding cache)."""
    ckpt = Path(ckpt_dir)
    cfg = read_config(ckpt)
    weights = ckpt / WEIGHTS
    if not weights.exists():
        raise FileNotFoundError(f"checkpoint {ckpt} has no {WEIGHTS}")
    if cfg.get("weights_sha256") and file_sha256(weights) != cfg["weights_sha256"]:
        raise ValueError(f"checkpoint {weights} is corrupt (SHA-256 mismatch)")
    mcfg = ModelConfig.from_dict(cfg["model"])
    # The decoder's pretrained init is overwritten by the stored weights: skip re-reading it.
    mcfg.decoder.init_from_litemedsam = False
    model = PromptSegModel(mcfg)
    if cfg.get("backbone_sha256") and getattr(model.backbone, "weights_sha256", None) not in (None, cfg["backbone_sha256"]):
        raise ValueError("the installed backbone weights differ from the ones this checkpoint was trained on")
    try:
        tensors = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types
        raise ValueError(f"cannot read {weights}: {exc}") from None
    try:
        cache = prompt_cache_from(tensors, cfg.get("prompt_cache", []))
    except KeyError as exc:
        raise ValueError(f"checkpoint {ckpt} lacks the prompt embedding {exc}") from None
    tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if not k.startswith("backbone.") or mcfg.train_backbone or not mcfg.pretrained_backbone]
    if missing or unexpected:
        raise ValueError(f"checkpoint {ckpt} does not match its config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.to(device).eval(), cfg, cache
