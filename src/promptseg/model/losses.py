"""Training losses for text-prompted segmentation (DuSSS / AMVLM / CPS4 lineage).

Every loss is a pure function on tensors that returns a scalar. When there is nothing
to compute (empty batch, all pixels ignored, no positive pair) the result is a zero
that is still connected to the inputs' graph, so ``loss.backward()`` never fails and
never yields NaN. Losses are computed in float32 even under autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from promptseg.model.distribution import w2_distance

__all__ = [
    "dice_bce_loss",
    "masked_pool",
    "uncertainty_similarity",
    "info_nce",
    "dual_contrastive_loss",
    "token_attention_loss",
    "pixel_class_loss",
    "text_guided_loss",
    "sigmoid_merge",
]

_EPS = 1e-6


def _zero(x: Tensor) -> Tensor:
    """A float zero that keeps ``x`` in the autograd graph."""
    return x.float().sum() * 0.0


# --------------------------------------------------------------------------- segmentation


def dice_bce_loss(
    logits: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    dice_weight: float = 1.0,
    bce_weight: float = 1.0,
) -> Tensor:
    """Soft Dice (smooth 1, averaged over maps) + BCE-with-logits.

    Args:
        logits: (N, H, W) raw logits; any (N, ...) layout works, maps are flattened.
        target: same shape, soft targets in [0, 1].
        weight: optional same-shape pixel weights in [0, 1]. A pixel with weight 0 is
            removed from both the Dice sums and the BCE mean, so ignored regions never
            influence the loss. Maps whose weights are all zero are left out of the
            Dice average instead of counting as a perfect 0.
    """
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} vs target {tuple(target.shape)}")
    if logits.numel() == 0:
        return _zero(logits)
    x = logits.float().flatten(1)
    t = target.float().flatten(1)
    w = torch.ones_like(x) if weight is None else weight.float().flatten(1).to(x.device)
    p = torch.sigmoid(x)

    smooth = 1.0
    inter = (w * p * t).sum(1)
    denom = (w * p).sum(1) + (w * t).sum(1)
    dice_per_map = 1.0 - (2.0 * inter + smooth) / (denom + smooth)
    map_valid = (w.sum(1) > 0).float()
    dice = (dice_per_map * map_valid).sum() / map_valid.sum().clamp_min(1.0)

    bce_px = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    bce = (bce_px * w).sum() / w.sum().clamp_min(_EPS)
    return dice_weight * dice + bce_weight * bce


def masked_pool(feats: Tensor, masks: Tensor) -> Tensor:
    """Mask-weighted mean of features: (B, C, H, W) × (B, K, H', W') → (B, K, C).

    e[b, k] = Σ_hw m·f / (Σ_hw m + 1e-6). Masks at another resolution are resized to
    the feature grid first: area averaging when shrinking (each feature cell gets the
    fraction of its footprint covered by the mask, so thin structures keep fractional
    weight instead of vanishing or bleeding into neighbours), bilinear when enlarging.
    """
    m = masks.to(feats.dtype) if masks.is_floating_point() else masks.float().to(feats.dtype)
    if m.shape[-2:] != feats.shape[-2:]:
        shrinking = m.shape[-2] >= feats.shape[-2] and m.shape[-1] >= feats.shape[-1]
        if shrinking:
            m = F.interpolate(m, size=feats.shape[-2:], mode="area")
        else:
            m = F.interpolate(m, size=feats.shape[-2:], mode="bilinear", align_corners=False)
    num = torch.einsum("bkhw,bchw->bkc", m, feats)
    return num / (m.sum(dim=(-2, -1)).unsqueeze(-1) + 1e-6)


# --------------------------------------------------------------------------- contrastive


def uncertainty_similarity(
    x: Tensor,
    y: Tensor,
    mu_x: Tensor,
    sigma_x: Tensor,
    mu_y: Tensor,
    sigma_y: Tensor,
    a: float = 1.0 / 200.0,
    b: float = 4.0,
    lam: float = 0.2,
) -> Tensor:
    """DuSSS semantic-similarity supervision, (N, D) × (M, D) → (N, M).

    cos  = cosine(x, y)
    D_s  = ‖x̂ − ŷ‖² of the L2-normalised features (= 2 − 2cos), clamped ≥ 1e-4
    D_u  = a · W2(N(μx, σx), N(μy, σy)) + b
    D_sss = exp(−λ · D_u / D_s)
    sîm  = 1 − (1 − cos) · D_sss

    High uncertainty (large W2) shrinks D_sss, pulling sîm towards 1: uncertain pairs
    are treated as possibly-corresponding rather than hard negatives.
    """
    xn = F.normalize(x.float(), dim=-1)
    yn = F.normalize(y.float(), dim=-1)
    cos = xn @ yn.transpose(-1, -2)
    d_s = (2.0 - 2.0 * cos).clamp_min(1e-4)
    d_u = a * w2_distance(mu_x, sigma_x, mu_y, sigma_y) + b
    d_sss = torch.exp(-lam * d_u / d_s)
    return 1.0 - (1.0 - cos) * d_sss


def info_nce(logits: Tensor, positives: Tensor, mask: Tensor | None = None) -> Tensor:
    """Multi-positive InfoNCE over rows of an (N, M) logit matrix.

    Row loss = −log( Σ_pos exp(l) / Σ_all exp(l) ); rows with no positive are skipped
    and the result is the mean over the remaining rows (0 if none).

    Args:
        logits: (N, M) already scaled (e.g. divided by the temperature).
        positives: (N, M) bool.
        mask: optional (N, M) bool; False entries are dropped from the denominator
            (and cannot be positives), e.g. absent candidates.
    """
    lg = logits.float()
    pos = positives.to(torch.bool)
    if mask is not None:
        mask = mask.to(torch.bool)
        pos = pos & mask
        lg = lg.masked_fill(~mask, float("-inf"))
    valid = pos.any(dim=1)
    # Invalid rows are replaced by a harmless all-positive row of zeros: computing them
    # with −inf would leak NaN into the backward pass even if masked out afterwards.
    lg = torch.where(valid[:, None], lg, torch.zeros_like(lg))
    pos = pos | ~valid[:, None]
    lse_all = torch.logsumexp(lg, dim=1)
    lse_pos = torch.logsumexp(lg.masked_fill(~pos, float("-inf")), dim=1)
    row_loss = torch.where(valid, lse_all - lse_pos, torch.zeros_like(lse_all))
    return row_loss.sum() / valid.sum().clamp_min(1).to(row_loss.dtype)


def dual_contrastive_loss(
    region_a: Tensor,
    region_b: Tensor,
    text: Tensor,
    region_class: Tensor,
    temperature: float | Tensor = 0.07,
    dist: tuple[Tensor, Tensor, Tensor, Tensor] | None = None,
) -> dict[str, Tensor]:
    """DuSSS dual contrastive learning (§3.3) at region level.

    Args:
        region_a: (N, D) region embeddings (online / raw view).
        region_b: (N, D) the same regions from the second (augmented / momentum) view.
        text: (M, D) class-text embeddings.
        region_class: (N,) long, index into ``text`` of each region's class.
        temperature: τ (float or learnable tensor); logits are similarities / τ.
        dist: optional (μ_r, σ_r, μ_t, σ_t) Gaussians for regions (from ``region_a``)
            and texts. If given, cross-modal logits are the uncertainty-aware sîm / τ —
            the paper's formulation; the shipped ``objectives.py`` computed sîm but
            applied CE to the raw cosine (pitfall §12.5).

    Returns:
        {'cmc': cross-modal ½(region→text + text→region), with every region of class m
         a positive for text m and texts without regions skipped;
         'imc': intra-modal ½(a→b + b→a) with positive j = i;
         'total': cmc + imc}
    """
    za = F.normalize(region_a.float(), dim=-1)
    zb = F.normalize(region_b.float(), dim=-1)
    zt = F.normalize(text.float(), dim=-1)
    m = zt.shape[0]

    if dist is None:
        sim = za @ zt.t()
    else:
        mu_r, sigma_r, mu_t, sigma_t = dist
        sim = uncertainty_similarity(za, zt, mu_r, sigma_r, mu_t, sigma_t)
    logits_rt = sim / temperature
    cls = region_class.to(device=za.device, dtype=torch.long)
    pos_rt = cls[:, None] == torch.arange(m, device=za.device)[None, :]
    cmc = 0.5 * (info_nce(logits_rt, pos_rt) + info_nce(logits_rt.t(), pos_rt.t()))

    logits_ab = (za @ zb.t()) / temperature
    eye = torch.eye(za.shape[0], dtype=torch.bool, device=za.device)
    imc = 0.5 * (info_nce(logits_ab, eye) + info_nce(logits_ab.t(), eye))
    # Keep text in the graph for the empty-region case so callers can always backward.
    cmc = cmc + _zero(zt)
    return {"cmc": cmc, "imc": imc, "total": cmc + imc}


def text_guided_loss(
    pixel_feats: Tensor,
    text: Tensor,
    soft_masks: Tensor,
    present: Tensor,
    logit_scale: Tensor | float,
) -> Tensor:
    """Extended InfoNCE between text-grounded pooled features and class texts (L_tg).

    e[b, k] = normalise(masked_pool(pixel_feats, soft_masks)[b, k]); logits
    ⟨e[b, k], t_n⟩ · scale.
      image side: each present (b, k) against all K texts, positive n = k;
      text side: each text k against all present e's, positives = e[b, k] present.
    Result is the mean of both sides.

    Args:
        pixel_feats: (B, C, H, W) dense features.
        text: (K, C) class-text embeddings.
        soft_masks: (B, K, H', W') soft masks in [0, 1] (resized to H×W if needed).
        present: (B, K) bool, which classes occur in each image.
        logit_scale: the multiplicative scale, already exponentiated and clamped
            (≤ 100, TCL convention) by the caller; this function applies it as is.
    """
    bsz, k = present.shape
    e = F.normalize(masked_pool(pixel_feats.float(), soft_masks).float(), dim=-1)
    t = F.normalize(text.float(), dim=-1)
    logits = torch.einsum("bkc,nc->bkn", e, t) * logit_scale  # (B, K, K)
    logits = logits.reshape(bsz * k, t.shape[0])
    pres = present.to(device=logits.device, dtype=torch.bool)
    eye = torch.eye(k, dtype=torch.bool, device=logits.device)

    pos_img = (eye[None] & pres[:, :, None]).reshape(bsz * k, k)
    loss_img = info_nce(logits, pos_img)

    pos_txt = pos_img.t()  # (K, B*K): text n ↔ e[b, k] with k = n and present
    col_ok = pres.reshape(1, bsz * k).expand(k, -1)
    loss_txt = info_nce(logits.t(), pos_txt, mask=col_ok)
    return 0.5 * (loss_img + loss_txt) + _zero(t)


# --------------------------------------------------------------------------- CPS4 attention


def token_attention_loss(attn: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """CPS4 token-level attention loss: KL(q ‖ attn), q = mask normalised per row.

    Args:
        attn: (N, P) attention of each class token over P image positions (rows sum
            to 1); extra leading dims are flattened.
        mask: (N, P) non-negative GT mask of that class on the same P positions.
        eps: added inside the logs so zero attention gives a large finite penalty.

    Rows whose mask is empty (class absent) are skipped; mean over remaining rows.
    """
    p = attn.shape[-1]
    a = attn.float().reshape(-1, p)
    msk = mask.float().reshape(-1, p).to(a.device).clamp_min(0.0)
    mass = msk.sum(1, keepdim=True)
    valid = mass.squeeze(1) > 0
    q = msk / mass.clamp_min(_EPS)
    # q·log q is 0 where q = 0, so only the support of the mask contributes.
    kl = (q * (torch.log(q + eps) - torch.log(a + eps))).sum(1)
    kl = torch.where(valid, kl, torch.zeros_like(kl))
    return kl.sum() / valid.sum().clamp_min(1).to(kl.dtype)


def pixel_class_loss(class_logits: Tensor, target: Tensor, ignore_index: int = -1) -> Tensor:
    """CPS4 pixel-level loss: cross-entropy over class-prompt similarity maps.

    Args:
        class_logits: (B, K, H, W); channel 0 is background, channel k is class k.
            If the maps are coarser than ``target`` they are bilinearly upsampled.
        target: (B, H, W) long, 0 = background, k = class k, ``ignore_index`` ignored.
    """
    x = class_logits.float()
    if x.shape[-2:] != target.shape[-2:]:
        x = F.interpolate(x, size=target.shape[-2:], mode="bilinear", align_corners=False)
    tgt = target.to(device=x.device, dtype=torch.long)
    n_valid = (tgt != ignore_index).sum()
    total = F.cross_entropy(x, tgt, ignore_index=ignore_index, reduction="sum")
    # Sum / count instead of reduction='mean': stays 0 (not NaN) when all are ignored.
    return total / n_valid.clamp_min(1).to(total.dtype) + _zero(x)


# --------------------------------------------------------------------------- merging
# Not a loss: CPS4 turns per-class sigmoid probabilities into one label map. It lives
# here because it shares conventions (0 = background, channel k-1 = class k).


def sigmoid_merge(probs: Tensor, tau: float = 0.5) -> Tensor:
    """Merge per-class sigmoid probabilities into labels.

    Args:
        probs: (K, H, W) or (B, K, H, W) probabilities of K foreground classes.
        tau: a pixel is background (0) when every class probability is below tau.

    Returns:
        (H, W) or (B, H, W) long labels: argmax class index + 1, or 0 for background.
    """
    if probs.dim() not in (3, 4):
        raise ValueError(f"expected (K,H,W) or (B,K,H,W), got {tuple(probs.shape)}")
    best, idx = probs.max(dim=-3)
    labels = idx.to(torch.long) + 1
    return torch.where(best >= tau, labels, torch.zeros_like(labels))
