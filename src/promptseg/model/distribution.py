"""Probabilistic token embeddings (DuSSS "PDE" / AMVLM "PDT") and their W2 distance.

The released DuSSS and AMVLM code ship the same single-block transformer that maps a
token sequence to a per-token diagonal Gaussian. The two projects disagree on what
the second output means: DuSSS exponentiates it, AMVLM uses it as σ directly (which
can go negative). We use the DuSSS convention throughout this package:

    the second branch predicts log σ, and ``DistributionHead`` returns σ = exp(log σ),

so σ is always strictly positive and the 2-Wasserstein distance below is well defined.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DistributionHead", "w2_distance"]

# log σ is clamped before exp so a diverging head cannot overflow to inf (exp(10) ≈ 2e4
# is far beyond any useful spread for L2-scale features).
_LOG_SIGMA_MIN = -10.0
_LOG_SIGMA_MAX = 10.0


class _Mlp(nn.Module):
    """Pre-norm transformer feed-forward block (Linear-GELU-Linear)."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(self.norm(x))))))


class DistributionHead(nn.Module):
    """Map tokens (B, N, D) to a diagonal Gaussian per token: (μ, σ), both (B, N, D).

    Structure follows the reference block:

    1. x' = LayerNorm(GELU(Linear(x)))
    2. multi-head self-attention on x' (qkv without bias); the concatenated head output
       is split in two halves of D/2 that feed the μ and log σ branches (Linear D/2 → D);
    3. μ = x + μ-branch, then μ = μ + MLP(LN(μ))   (residual on the input, so μ starts
       near the deterministic embedding);
    4. log σ = log σ-branch + MLP(LN(log σ)); σ = exp(clamp(log σ)).

    Args:
        dim: token width D; must be even and divisible by ``num_heads``.
        num_heads: attention heads (reference uses 8; default 4 for small widths).
        mlp_ratio: hidden width of the MLPs relative to D.
        dropout: dropout on attention weights and projections (reference 0.1; default
            0.0 so that evaluation and tests are deterministic).
    """

    def __init__(
        self, dim: int, num_heads: int = 4, mlp_ratio: float = 4.0, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
        if dim % 2 != 0:
            raise ValueError(f"dim={dim} must be even (attention output is split in halves)")
        self.dim = dim
        self.num_heads = num_heads
        self.dropout = dropout
        hidden = int(dim * mlp_ratio)

        self.proj_in = nn.Linear(dim, dim)
        self.norm_in = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.mu_proj = nn.Linear(dim // 2, dim)
        self.log_sigma_proj = nn.Linear(dim // 2, dim)
        self.proj_drop = nn.Dropout(dropout)
        self.mu_mlp = _Mlp(dim, hidden, dropout)
        self.log_sigma_mlp = _Mlp(dim, hidden, dropout)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # Reference init: N(0, 0.02) weights, zero biases; LayerNorm stays identity.
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def _attention(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        h = self.num_heads
        qkv = self.qkv(x).reshape(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, h, N, D/h)
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0
        )
        return out.transpose(1, 2).reshape(b, n, d)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return (μ, σ) with σ = exp(log σ) > 0, both shaped like ``x`` (B, N, D)."""
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"expected (B, N, {self.dim}) tokens, got {tuple(x.shape)}")
        h = self.norm_in(F.gelu(self.proj_in(x)))
        a = self._attention(h)
        half = self.dim // 2
        mu = x + self.proj_drop(self.mu_proj(a[..., :half]))
        mu = mu + self.mu_mlp(mu)
        log_sigma = self.proj_drop(self.log_sigma_proj(a[..., half:]))
        log_sigma = log_sigma + self.log_sigma_mlp(log_sigma)
        sigma = torch.exp(log_sigma.clamp(_LOG_SIGMA_MIN, _LOG_SIGMA_MAX))
        return mu, sigma


def _pairwise_sq_dist(a: Tensor, b: Tensor) -> Tensor:
    """Squared Euclidean distances (…, N, M) via the Gram expansion.

    Avoids materialising an (N, M, D) difference tensor and avoids the sqrt in
    ``torch.cdist`` (whose gradient is NaN at zero distance). The expansion can round
    slightly below zero, hence the clamp.
    """
    a = a.float()
    b = b.float()
    sq = a.pow(2).sum(-1, keepdim=True) + b.pow(2).sum(-1).unsqueeze(-2)
    return (sq - 2.0 * a @ b.transpose(-1, -2)).clamp_min(0.0)


def w2_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> Tensor:
    """Squared 2-Wasserstein distance between diagonal Gaussians, all pairs.

    W2(i, j) = ‖μ1_i − μ2_j‖² + ‖σ1_i − σ2_j‖²  (σ are standard deviations, not log σ).

    Args:
        mu1, sigma1: (N, D) (optionally with shared leading batch dims).
        mu2, sigma2: (M, D).

    Returns:
        (N, M) float32 distances, ≥ 0.
    """
    if mu1.shape != sigma1.shape or mu2.shape != sigma2.shape:
        raise ValueError("mu and sigma must have matching shapes")
    return _pairwise_sq_dist(mu1, mu2) + _pairwise_sq_dist(sigma1, sigma2)
