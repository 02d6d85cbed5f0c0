"""Pseudo labels for unlabelled images: logit-space fusion, confidence, ramps, EMA teacher.

Fusion is a product of experts in logit space, z = z_teacher + w_g·z_grounding + w_x·z_exemplar,
never a sum of probabilities: σ(p_t + m_text) with p, m ∈ [0, 1] is above 0.5 everywhere and
turns every pixel into foreground. Experts that disagree cancel, so
their pixels fall below the confidence threshold and are left out of the loss.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..model.heads import merge_classes


FUSION_RULES = ("sum", "veto", "gate")


def fuse_logits(z_teacher: torch.Tensor, z_grounding: torch.Tensor | None = None,
                z_exemplar: torch.Tensor | None = None, w_grounding: float = 1.0,
                w_exemplar: float = 1.0, rule: str = "sum") -> torch.Tensor:
    """Product of experts in logit space; a missing expert (None or weight 0) adds nothing.

    - ``sum``: z = z_t + w_g·z_g + w_x·z_x; confident experts can flip the teacher's label.
    - ``veto``: the same sum, but where its sign differs from the teacher's the pixel gets
      z = 0 (confidence 0.5, so it is masked): experts that are less accurate than the
      teacher can confirm or reject its label, never replace it.
    - ``gate``: z = z_t + g·(w_g·z_g + w_x·z_x) with g = 1 − |2σ(z_t) − 1|: the experts
      speak where the teacher is unsure and are silent where it is confident.
    """
    if rule not in FUSION_RULES:
        raise ValueError(f"unknown fusion rule {rule!r}; choose from {', '.join(FUSION_RULES)}")
    z_t = z_teacher.float()
    experts = torch.zeros_like(z_t)
    if z_grounding is not None and w_grounding:
        experts = experts + w_grounding * z_grounding.float()
    if z_exemplar is not None and w_exemplar:
        experts = experts + w_exemplar * z_exemplar.float()
    if rule == "gate":
        return z_t + (1 - (2 * torch.sigmoid(z_t) - 1).abs()) * experts
    z = z_t + experts
    if rule == "veto":
        z = torch.where((z > 0) == (z_t > 0), z, torch.zeros_like(z))
    return z


def binary_pseudo_label(z: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard target σ(z) > 0.5 and the mask of confident pixels, max(p, 1-p) ≥ tau."""
    p = torch.sigmoid(z)
    return (p > 0.5).float(), (torch.maximum(p, 1 - p) >= tau).float()


def multiclass_pseudo_label(z: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CPS4 merge of fused per-class logits (..., K, H, W): label map (0 = background),
    per-class one-hot targets (..., K, H, W) and a confidence mask (..., H, W).

    A pixel is class k when σ(z_k) is the largest and ≥ 0.5, background when every class is
    below 0.5. Its confidence is σ(z_k) for a class pixel and 1 - max_k σ(z_k) for
    background, so overlapping confident classes (two classes both near 1) are still
    resolved by the arg-max, while a pixel on which the experts disagree is masked."""
    p = torch.sigmoid(z)
    labels = merge_classes(p, 0.5)
    best = p.amax(dim=-3)
    conf = torch.where(labels > 0, best, 1 - best)
    k = z.shape[-3]
    ids = torch.arange(1, k + 1, device=z.device).view(*([1] * (z.dim() - 3)), k, 1, 1)
    onehot = (labels.unsqueeze(-3) == ids).float()
    return labels, onehot, (conf >= tau).float()


def sigmoid_ramp(step: int, ramp_steps: int) -> float:
    """Laine & Aila's exp(-5 (1 - t)²) ramp from ~0 to 1 over ``ramp_steps``."""
    if ramp_steps <= 0:
        return 1.0
    t = min(max(step / ramp_steps, 0.0), 1.0)
    return float(math.exp(-5.0 * (1.0 - t) ** 2))


def ema_alpha(step: int, alpha_max: float = 0.99) -> float:
    """Mean-teacher warm-up: α = min(1 - 1/(step + 1), α_max); the teacher follows the
    student closely at first, when the student changes fastest."""
    return min(1.0 - 1.0 / (step + 1), alpha_max)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, alpha: float) -> None:
    """teacher ← α·teacher + (1-α)·student for trainable parameters (a frozen backbone is
    identical in both and skipped); buffers are copied. Multi-tensor ops: one launch for all
    tensors instead of one per tensor (hundreds per step on a GPU)."""
    pairs = [(t, s.detach()) for t, s in zip(teacher.parameters(), student.parameters()) if s.requires_grad]
    if pairs:
        torch._foreach_lerp_([t for t, _ in pairs], [s for _, s in pairs], 1.0 - alpha)
    # By name: some modules cache eval-only buffers (TinyViT's attention biases), so the
    # teacher (eval) and the student (train) need not hold the same buffer list.
    sb = dict(student.named_buffers())
    bufs = [(t, sb[name]) for name, t in teacher.named_buffers()
            if name in sb and sb[name].shape == t.shape and sb[name].dtype == t.dtype]
    if bufs:
        torch._foreach_copy_([t for t, _ in bufs], [s for _, s in bufs])
