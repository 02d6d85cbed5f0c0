"""Checkpoints: ``model.safetensors`` + ``config.json``. Never pickle.

A frozen pretrained backbone is not stored; the config records its SHA-256 and loading
re-reads it from its package and checks the hash. Prompt embeddings of the checkpoint's
classes are stored too, so a machine without the text encoder weights can still decode.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..fsutil import atomic_path, file_sha256
from .decoder import DecoderConfig
from .segmenter import ModelConfig, PromptSegModel
from .text import TextEmbedding, prompt_cache_from, prompt_cache_tensors

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
# The shipped default model and its weights' hash, checked whatever its config.json says.
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "weights" / "default"
DEFAULT_WEIGHTS_SHA256 = "78fcb71385085208e745167926454d3ad897a60f5782810384256b5b2eb5113d"

# Upper bounds of a checkpoint's sizes, checked before anything is allocated: the shipped
# model's sizes with room to grow, far below what would exhaust memory.
_DECODER_BOUNDS = {"dim": (8, 1024), "depth": (1, 12), "heads": (1, 64), "mlp_dim": (8, 8192),
                   "text_dim": (8, 4096), "image_channels": (8, 1024)}
_MODEL_BOUNDS = {"grounding_dim": (4, 1024)}
_BACKBONE_INT_MAX = 4096


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


def _bounded(section: dict[str, Any], bounds: dict[str, tuple[int, int]], where: str) -> None:
    for key, (lo, hi) in bounds.items():
        if key in section:
            v = section[key]
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise ValueError(f"{where}: {key} = {v!r} is out of bounds (an integer in {lo}..{hi})")


def validate_model_config(model: Any, where: str = "checkpoint config") -> ModelConfig:
    """A checkpoint's ``model`` section as a ModelConfig, after refusing unknown keys and sizes
    out of bounds (a crafted config.json must not allocate terabytes or raise a TypeError)."""
    if not isinstance(model, dict):
        raise ValueError(f"{where}: 'model' must be an object, got {type(model).__name__}")
    known = {f.name for f in fields(ModelConfig)}
    unknown = sorted(set(model) - known)
    if unknown:
        raise ValueError(f"{where}: unknown model key(s) {unknown}; known: {sorted(known)}")
    decoder = model.get("decoder", {})
    if not isinstance(decoder, dict):
        raise ValueError(f"{where}: 'decoder' must be an object")
    unknown = sorted(set(decoder) - {f.name for f in fields(DecoderConfig)})
    if unknown:
        raise ValueError(f"{where}: unknown decoder key(s) {unknown}")
    _bounded(decoder, _DECODER_BOUNDS, f"{where}, decoder")
    _bounded(model, _MODEL_BOUNDS, where)
    dim, heads = decoder.get("dim", DecoderConfig.dim), decoder.get("heads", DecoderConfig.heads)
    if dim % heads:
        raise ValueError(f"{where}: decoder dim {dim} is not divisible by its {heads} heads")
    kwargs = model.get("backbone_kwargs", {})
    if not isinstance(kwargs, dict):
        raise ValueError(f"{where}: 'backbone_kwargs' must be an object")
    for key, v in kwargs.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and not 0 < v <= _BACKBONE_INT_MAX:
            raise ValueError(f"{where}: backbone_kwargs {key} = {v!r} is out of bounds (1..{_BACKBONE_INT_MAX})")
    try:
        return ModelConfig.from_dict(model)
    except TypeError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _project_sha256(ckpt: Path) -> str | None:
    """The hash a project's database records for a model folder ``<project>/models/<v>``, read
    directly (read-only) so every loader checks it, whatever config.json says."""
    db = ckpt.parent.parent / "project.sqlite"
    if ckpt.parent.name != "models" or not db.is_file():
        return None
    try:
        con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
        try:
            row = con.execute("SELECT sha256 FROM models WHERE path=?", (f"models/{ckpt.name}",)).fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def load_checkpoint(ckpt_dir: str | Path, device: str | torch.device = "cpu", expected_sha256: str | None = None
                    ) -> tuple[PromptSegModel, dict[str, Any], dict[str, TextEmbedding]]:
    """Load a checkpoint folder -> (model in eval mode, config, prompt embedding cache). The
    weights' hash is checked against ``expected_sha256``, the project database's record, the
    shipped default's constant and config.json, each that applies."""
    ckpt = Path(ckpt_dir)
    cfg = read_config(ckpt)
    weights = ckpt / WEIGHTS
    if not weights.exists():
        raise FileNotFoundError(f"checkpoint {ckpt} has no {WEIGHTS}")
    expected = {"the caller": expected_sha256, "the project database": _project_sha256(ckpt),
                "promptseg's default model": DEFAULT_WEIGHTS_SHA256 if ckpt.resolve() == DEFAULT_CHECKPOINT else None,
                CONFIG: cfg.get("weights_sha256")}
    if any(expected.values()):
        actual = file_sha256(weights)
        for source, sha in expected.items():
            if sha and sha != actual:
                raise ValueError(f"checkpoint {weights} is corrupt or was modified: its SHA-256 differs from "
                                 f"the one recorded by {source}; refusing to load it")
    mcfg = validate_model_config(cfg.get("model"), f"checkpoint config {ckpt / CONFIG}")
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
