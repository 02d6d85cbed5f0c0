"""Accept: store an annotator's corrected labels with their provenance (the proposal they
started from, how much of it they changed, how long it took)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..training.evaluate import dice, edited_fraction
from .objects import MaskObject, mask_sources


@dataclass
class Accepted:
    image: object              # the project's ImageRecord
    label: object              # the corrected LabelRecord
    proposal_stored: bool      # the proposal was stored now (not before)


def check_correction(proposal: np.ndarray, final: np.ndarray, prompts: list[str]) -> str | None:
    """Why ``final`` cannot be accepted as a correction of ``proposal``, or None."""
    if final.shape != proposal.shape or final.min() < 0 or final.max() > len(prompts):
        return (f"the layer must keep shape {proposal.shape} and values 0..{len(prompts)} "
                f"({', '.join(prompts)})")
    return None


def dice_vs_proposal(proposal: np.ndarray, final: np.ndarray, n_classes: int) -> float:
    """Mean Dice per class between the proposal and the accepted labels, over the classes
    either marks (1.0 when neither marks any)."""
    fg = [dice(proposal == k, final == k) for k in range(1, n_classes + 1)
          if (proposal == k).any() or (final == k).any()]
    return float(np.mean(fg)) if fg else 1.0


def accept(project, image_array: np.ndarray, name: str, proposal: np.ndarray, final: np.ndarray,
           prompts: list[str], model_version: int | None, prompt: str | None = None,
           seconds: float | None = None, spacing: tuple[float, ...] | None = None,
           stored_proposal: np.ndarray | None = None, objects: list[MaskObject] | None = None) -> Accepted:
    """Add the image (idempotent), store the proposal unless ``stored_proposal`` equals it, then
    the corrected labels with Dice against the proposal, the edited fraction and where each
    class's pixels came from (``objects`` made from boxes, clicks or exemplars; the text
    proposal; the brush). Raises ValueError (nothing stored) when ``final`` is not a correction
    of ``proposal``."""
    final = np.asarray(final).astype(np.int32)
    problem = check_correction(proposal, final, prompts)
    if problem:
        raise ValueError(problem)
    sources = mask_sources(proposal, final, prompts, objects)
    prompt = "; ".join(prompts) if prompt is None else prompt
    rec = project.add_image(image_array, name=name, spacing=spacing)
    stored = stored_proposal is None or not np.array_equal(stored_proposal, proposal)
    if stored:
        project.save_label(rec, proposal, prompts, "proposal", model_version=model_version, prompt=prompt)
    lab = project.save_label(rec, final, prompts, "corrected", model_version=model_version, prompt=prompt,
                             dice_vs_proposal=dice_vs_proposal(proposal, final, len(prompts)),
                             edited_fraction=edited_fraction(proposal, final), seconds=seconds,
                             sources=sources)
    return Accepted(rec, lab, stored)
