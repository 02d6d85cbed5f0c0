"""Map typed prompts onto the project's classes (no Qt here).

An exact name or synonym (case-insensitive) maps with score 1. Otherwise the frozen text
encoder's cosine similarity decides: at or above ``threshold`` the prompt reuses the closest
class ("nuclei" → nucleus (0.86)); below it, the prompt is a new class. A prompt and a class
with different laterality ("left thalamus" vs "thalamus") never map onto each other.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..model.text import parse_prompt

THRESHOLD = 0.85


@dataclass
class Mapped:
    typed: str
    name: str              # the class to use (typed itself when new)
    score: float | None    # similarity to that class; None for a new class

    @property
    def is_new(self) -> bool:
        return self.score is None

    def describe(self) -> str:
        if self.score is None:
            return f"{self.typed} (new class)"
        if self.typed.lower() == self.name.lower():
            return self.name
        return f"{self.typed} → {self.name} ({self.score:.2f})"


def map_prompts(prompts: list[str], classes: dict[str, list[str]], text_encoder=None,
                threshold: float = THRESHOLD) -> list[Mapped]:
    """``classes``: class name -> synonyms. ``text_encoder`` needs ``similarity(a, names)``;
    without one only exact names and synonyms map."""
    exact = {c.lower(): c for c in classes}
    exact.update({s.lower(): c for c, syns in classes.items() for s in syns})
    out: list[Mapped] = []
    for typed in prompts:
        key = typed.strip().lower()
        if key in exact:
            out.append(Mapped(typed, exact[key], 1.0))
            continue
        side = parse_prompt(typed).laterality
        names = [c for c in classes if parse_prompt(c).laterality == side]
        if names and text_encoder is not None:
            sims = text_encoder.similarity(typed, names)
            best = int(sims.argmax())
            if float(sims[best]) >= threshold:
                out.append(Mapped(typed, names[best], float(sims[best])))
                continue
        out.append(Mapped(typed, typed, None))
    return out


def unique_names(mapped: list[Mapped]) -> list[str]:
    """Class names to predict, in order, each once (two prompts may map to one class)."""
    return list(dict.fromkeys(m.name for m in mapped))
