"""Hand-made cases with known answers for promptseg.model.losses / distribution."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from promptseg.model.distribution import DistributionHead, w2_distance
from promptseg.model.losses import (
    dice_bce_loss,
    dual_contrastive_loss,
    info_nce,
    masked_pool,
    pixel_class_loss,
    sigmoid_merge,
    text_guided_loss,
    token_attention_loss,
    uncertainty_similarity,
)


def _finite_grad(loss: torch.Tensor, *leaves: torch.Tensor) -> None:
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    for leaf in leaves:
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all()


# ----------------------------------------------------------------------------- distribution


def test_distribution_head_shapes_and_positive_sigma() -> None:
    torch.manual_seed(0)
    head = DistributionHead(16, num_heads=4)
    x = torch.randn(2, 5, 16, requires_grad=True)
    mu, sigma = head(x)
    assert mu.shape == sigma.shape == (2, 5, 16)
    assert (sigma > 0).all()
    # Zero-mean small init: μ starts close to the input tokens (residual path).
    assert (mu - x).abs().mean() < 0.5
    _finite_grad(mu.sum() + sigma.sum(), x)
    with pytest.raises(ValueError):
        DistributionHead(10, num_heads=4)


def test_distribution_head_deterministic_without_dropout() -> None:
    head = DistributionHead(8, num_heads=2).train()
    x = torch.randn(1, 3, 8)
    mu1, s1 = head(x)
    mu2, s2 = head(x)
    assert torch.equal(mu1, mu2) and torch.equal(s1, s2)


def test_w2_distance_known_values() -> None:
    mu = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    sig = torch.tensor([[1.0, 1.0], [1.0, 2.0]])
    d = w2_distance(mu, sig, mu, sig)
    assert d.shape == (2, 2)
    assert torch.allclose(d.diagonal(), torch.zeros(2), atol=1e-5)
    assert torch.allclose(d, d.t())
    assert d[0, 1].item() == pytest.approx(25.0 + 1.0)
    d2 = w2_distance(mu[:1], sig[:1], mu, sig)
    assert d2.shape == (1, 2)


# ----------------------------------------------------------------------------- dice / bce


def test_dice_bce_perfect_vs_inverted() -> None:
    target = torch.zeros(2, 4, 4)
    target[0, :2] = 1.0
    target[1, :, 1] = 1.0
    perfect = torch.where(target > 0.5, 20.0, -20.0)
    assert dice_bce_loss(perfect, target).item() < 1e-3
    assert dice_bce_loss(-perfect, target).item() > 10.0


def test_dice_bce_weight_masks_out_pixels() -> None:
    target = torch.zeros(1, 4, 4)
    target[0, 0, 0] = 1.0
    weight = torch.zeros(1, 4, 4)
    weight[0, :2, :2] = 1.0
    logits = torch.where(target > 0.5, 20.0, -20.0)
    base = dice_bce_loss(logits, target, weight)
    garbage = logits.clone()
    garbage[0, 2:, :] = 20.0  # wrong outside the weighted region
    garbage[0, :, 2:] = 20.0
    assert torch.allclose(dice_bce_loss(garbage, target, weight), base)
    assert base.item() < 1e-3
    assert dice_bce_loss(garbage, target).item() > 1.0


def test_dice_bce_degenerate_and_grad() -> None:
    logits = torch.randn(2, 3, 3, requires_grad=True)
    zero_w = dice_bce_loss(logits, torch.ones(2, 3, 3), torch.zeros(2, 3, 3))
    assert zero_w.item() == 0.0
    _finite_grad(zero_w, logits)
    empty = torch.zeros(0, 3, 3, requires_grad=True)
    _finite_grad(dice_bce_loss(empty, torch.zeros(0, 3, 3)), empty)
    logits.grad = None
    _finite_grad(dice_bce_loss(logits, torch.rand(2, 3, 3), dice_weight=0.5), logits)


# ----------------------------------------------------------------------------- masked_pool


def test_masked_pool_mean_inside_mask() -> None:
    feats = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)
    masks = torch.zeros(1, 2, 4, 4)
    masks[0, 0, 0, :2] = 1.0  # pixels (0,0),(0,1)
    masks[0, 1] = 1.0  # everything
    out = masked_pool(feats, masks)
    assert out.shape == (1, 2, 2)
    assert torch.allclose(out[0, 0], torch.tensor([0.5, 16.5]), atol=1e-4)
    assert torch.allclose(out[0, 1], feats[0].mean(dim=(1, 2)), atol=1e-4)


def test_masked_pool_resizes_masks() -> None:
    feats = torch.zeros(1, 1, 2, 2)
    feats[0, 0, 0, 0] = 4.0
    masks = torch.zeros(1, 1, 8, 8)
    masks[0, 0, :4, :4] = 1.0  # exactly the top-left feature cell
    out = masked_pool(feats, masks)
    assert out[0, 0, 0].item() == pytest.approx(4.0, abs=1e-3)
    empty = masked_pool(feats, torch.zeros(1, 1, 8, 8))
    assert torch.isfinite(empty).all() and empty.abs().max() == 0


# ----------------------------------------------------------------------------- uncertainty sim


def _sim_inputs() -> tuple[torch.Tensor, ...]:
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([[1.0, 1.0], [-1.0, 0.0], [0.0, 2.0]])
    mu_x, mu_y = torch.zeros(2, 2), torch.zeros(3, 2)
    return x, y, mu_x, mu_y


def test_uncertainty_similarity_limits() -> None:
    x, y, mu_x, mu_y = _sim_inputs()
    cos = F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).t()
    s = torch.ones(2, 2)
    sy = torch.ones(3, 2)
    # λ = 0 → D_sss = 1 → sîm = cos
    assert torch.allclose(uncertainty_similarity(x, y, mu_x, s, mu_y, sy, lam=0.0), cos, atol=1e-6)
    # λ → ∞ → D_sss → 0 → sîm = 1
    big = uncertainty_similarity(x, y, mu_x, s, mu_y, sy, lam=1e6)
    assert torch.allclose(big, torch.ones(2, 3), atol=1e-6)
    # Hand value: x0 vs y1 is antipodal: cos=-1, D_s=4, D_u=b=4 (W2=0), D_sss=exp(-0.2)
    sim = uncertainty_similarity(x, y, mu_x, s, mu_y, sy)
    assert sim[0, 1].item() == pytest.approx(1.0 - 2.0 * math.exp(-0.2), abs=1e-5)
    # Always between cos and 1.
    assert (sim >= cos - 1e-6).all() and (sim <= 1.0 + 1e-6).all()


def test_uncertainty_similarity_more_uncertain_is_softer() -> None:
    x, y, mu_x, mu_y = _sim_inputs()
    s = torch.ones(2, 2)
    low = uncertainty_similarity(x, y, mu_x, s, mu_y, torch.ones(3, 2))
    high = uncertainty_similarity(x, y, mu_x, s, mu_y, 30.0 * torch.ones(3, 2))
    off = torch.tensor([[0, 1, 1], [1, 1, 0]], dtype=torch.bool)  # pairs with cos < 1
    assert (high[off] > low[off]).all()


def test_uncertainty_similarity_grad() -> None:
    x = torch.randn(3, 4, requires_grad=True)
    y = torch.randn(2, 4, requires_grad=True)
    sig = torch.rand(3, 4, requires_grad=True)
    mu_x, mu_y = torch.randn(3, 4), torch.randn(2, 4)
    sim = uncertainty_similarity(x, y, mu_x, sig + 0.1, mu_y, torch.ones(2, 4))
    _finite_grad(sim.sum(), x, y, sig)


# ----------------------------------------------------------------------------- info_nce


def test_info_nce_uniform_and_ordering() -> None:
    m = 5
    pos = torch.zeros(3, m, dtype=torch.bool)
    pos[torch.arange(3), torch.arange(3)] = True
    assert info_nce(torch.zeros(3, m), pos).item() == pytest.approx(math.log(m), abs=1e-6)
    good = torch.where(pos, 5.0, 0.0)
    bad = torch.where(pos, -5.0, 0.0)
    assert info_nce(good, pos) < info_nce(torch.zeros(3, m), pos) < info_nce(bad, pos)
    # Two positives among four equal logits: -log(2/4).
    pos2 = torch.tensor([[True, True, False, False]])
    assert info_nce(torch.zeros(1, 4), pos2).item() == pytest.approx(math.log(2.0), abs=1e-6)


def test_info_nce_skips_rows_and_mask() -> None:
    logits = torch.randn(3, 4, requires_grad=True)
    pos = torch.zeros(3, 4, dtype=torch.bool)
    pos[0, 1] = True
    only_row0 = -torch.log_softmax(logits[0].detach(), 0)[1]
    assert torch.allclose(info_nce(logits, pos), only_row0)
    mask = torch.tensor([[True, True, False, False]] * 3)
    masked = info_nce(torch.zeros(3, 4), pos, mask=mask)
    assert masked.item() == pytest.approx(math.log(2.0), abs=1e-6)
    none = info_nce(logits, torch.zeros(3, 4, dtype=torch.bool))
    assert none.item() == 0.0
    _finite_grad(none, logits)


# ----------------------------------------------------------------------------- dual contrastive


def test_dual_contrastive_aligned_lower_than_shuffled() -> None:
    text = torch.eye(3, 8)
    cls = torch.tensor([0, 1, 2, 0])
    regions = text[cls] + 0.01 * torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    aligned = dual_contrastive_loss(regions, regions.clone(), text, cls)
    shuffled_cls = torch.tensor([1, 2, 0, 1])
    shuffled = dual_contrastive_loss(regions, regions[[1, 2, 3, 0]], text, shuffled_cls)
    assert set(aligned) == {"cmc", "imc", "total"}
    assert aligned["cmc"] < shuffled["cmc"]
    assert aligned["imc"] < shuffled["imc"]
    assert torch.allclose(aligned["total"], aligned["cmc"] + aligned["imc"])


def test_dual_contrastive_with_distribution_and_grad() -> None:
    torch.manual_seed(1)
    ra = torch.randn(4, 8, requires_grad=True)
    rb = torch.randn(4, 8, requires_grad=True)
    text = torch.randn(5, 8, requires_grad=True)  # classes 3,4 have no region: skipped
    sig_r = torch.rand(4, 8, requires_grad=True)
    cls = torch.tensor([0, 1, 2, 0])
    dist = (torch.randn(4, 8), sig_r + 0.1, torch.randn(5, 8), torch.ones(5, 8))
    out = dual_contrastive_loss(ra, rb, text, cls, temperature=torch.tensor(0.07), dist=dist)
    plain = dual_contrastive_loss(ra, rb, text, cls)
    assert not torch.allclose(out["cmc"], plain["cmc"])  # SSS actually changes the logits
    _finite_grad(out["total"], ra, rb, text, sig_r)


def test_dual_contrastive_empty() -> None:
    text = torch.randn(3, 8, requires_grad=True)
    ra = torch.zeros(0, 8, requires_grad=True)
    out = dual_contrastive_loss(ra, ra, text, torch.zeros(0, dtype=torch.long))
    assert out["total"].item() == 0.0
    _finite_grad(out["total"], text)


# ----------------------------------------------------------------------------- CPS4 attention


def test_token_attention_loss() -> None:
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 3.0]])
    q = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25], [0.0, 0.0, 0.0, 1.0]])
    assert token_attention_loss(q, mask).item() == pytest.approx(0.0, abs=1e-6)
    uniform = torch.full((3, 4), 0.25, requires_grad=True)
    # Row 0: KL = log(0.5/0.25) = log 2; row 2: log 4; empty row 1 is skipped.
    expected = (math.log(2.0) + math.log(4.0)) / 2
    loss = token_attention_loss(uniform, mask)
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    _finite_grad(loss, uniform)
    empty = token_attention_loss(uniform.detach().requires_grad_(), torch.zeros(3, 4))
    assert empty.item() == 0.0


def test_pixel_class_loss_matches_cross_entropy() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]]).t().reshape(1, 3, 1, 2)
    logits = logits.clone().requires_grad_()
    target = torch.tensor([[[0, 1]]])
    ref = F.cross_entropy(logits.detach(), target)
    loss = pixel_class_loss(logits, target)
    assert torch.allclose(loss, ref)
    manual = -(torch.log_softmax(torch.tensor([2.0, 0.0, -1.0]), 0)[0]
               + torch.log_softmax(torch.tensor([0.0, 3.0, 0.0]), 0)[1]) / 2
    assert loss.item() == pytest.approx(manual.item(), abs=1e-6)
    _finite_grad(loss, logits)
    ignored = torch.tensor([[[-1, 1]]])
    ref_ign = F.cross_entropy(logits, ignored, ignore_index=-1)
    assert torch.allclose(pixel_class_loss(logits, ignored), ref_ign)
    all_ign = pixel_class_loss(logits, torch.full((1, 1, 2), -1))
    assert all_ign.item() == 0.0 and all_ign.requires_grad


def test_pixel_class_loss_upsamples_coarse_maps() -> None:
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 1] = 10.0
    target = torch.ones(1, 8, 8, dtype=torch.long)
    assert pixel_class_loss(logits, target).item() < 1e-3


# ----------------------------------------------------------------------------- text guided


def _tg_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # Left half of the image carries text-0's feature, right half text-1's.
    text = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    feats = torch.zeros(1, 3, 4, 4)
    feats[0, 0, :, :2] = 1.0
    feats[0, 1, :, 2:] = 1.0
    left = torch.zeros(4, 4)
    left[:, :2] = 1.0
    return feats, text, left


def test_text_guided_matching_mask_lower() -> None:
    feats, text, left = _tg_case()
    right = 1.0 - left
    good_masks = torch.stack([left, right])[None]
    bad_masks = torch.stack([right, left])[None]
    present = torch.tensor([[True, True]])
    scale = torch.tensor(10.0)
    good = text_guided_loss(feats, text, good_masks, present, scale)
    bad = text_guided_loss(feats, text, bad_masks, present, scale)
    assert good.item() < 1e-3 < bad.item()


def test_text_guided_absent_classes_and_grad() -> None:
    feats, text, left = _tg_case()
    feats = feats.clone().requires_grad_()
    text = text.clone().requires_grad_()
    masks = torch.stack([left, 1.0 - left])[None]
    present = torch.tensor([[True, False]])
    loss = text_guided_loss(feats, text, masks, present, torch.tensor(10.0))
    # Image side: e0 vs texts (1, 0) → -log softmax([10, 0])[0]; text side: one candidate → 0.
    expected = 0.5 * F.softplus(torch.tensor(-10.0)).item()
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    _finite_grad(loss, feats, text)
    none = text_guided_loss(feats, text, masks, torch.zeros(1, 2, dtype=torch.bool), 10.0)
    assert none.item() == 0.0


# ----------------------------------------------------------------------------- merge


def test_sigmoid_merge_two_classes() -> None:
    probs = torch.tensor(
        [
            [[0.9, 0.1], [0.6, 0.2]],  # class 1
            [[0.2, 0.8], [0.7, 0.3]],  # class 2
        ]
    )
    expected = torch.tensor([[1, 2], [2, 0]])
    out = sigmoid_merge(probs)
    assert out.dtype == torch.long and torch.equal(out, expected)
    batched = sigmoid_merge(torch.stack([probs, probs]))
    assert batched.shape == (2, 2, 2) and torch.equal(batched[1], expected)
    assert torch.equal(sigmoid_merge(probs, tau=0.95), torch.zeros(2, 2, dtype=torch.long))
