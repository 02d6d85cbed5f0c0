"""The click head: clicks on a frozen LiteMedSAM view embedding -> the clicked object's coarse mask.

LiteMedSAM's mask decoder answers boxes, not clicks. This small network grows the clicked
object on the encoder's 64x64 features: each feature is compared with the features under the
inside and the outside clicks, given its distance to them, and a stack of dilated convolutions
(whose reach spans the whole view) turns that into a coarse mask logit per cell. The spatial
path then decodes the coarse mask's bounding box with the box decoder and blends the two.

Weights: ``weights/click_head/`` (safetensors + config.json), SHA-256 checked at load.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..fsutil import file_sha256
from .spatial import GRID

CLICK_HEAD_DIR = Path(__file__).resolve().parents[1] / "weights" / "click_head"
CLICK_HEAD_SHA256 = "bc207345d95f3f107016fc7fa7fee18b4a399652f800d9765b1834a557b2b6f0"
DILATIONS = (1, 2, 4, 8, 1)
POOL = 2          # by default the head works on the embedding pooled to a coarser grid


class ClickHead(nn.Module):
    """emb (B, 256, 64, 64) + clicks -> (B, 1, 64, 64) coarse mask logits.

    ``pos``/``neg``: (B, P, 2) x, y clicks in the 256² input frame with (B, P) bool validity.
    """

    def __init__(self, in_channels: int = 256, dim: int = 32, pool: int = POOL):
        super().__init__()
        self.cfg = {"in_channels": in_channels, "dim": dim, "pool": pool}
        self.pool = pool
        self.proj = nn.Conv2d(in_channels, dim, 1)
        layers, ch = [], 3 * dim + 6
        for d in DILATIONS:
            layers += [nn.Conv2d(ch, dim, 3, padding=d, dilation=d), nn.GroupNorm(4, dim), nn.GELU()]
            ch = dim
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(dim, 1, 1)

    @staticmethod
    def click_maps(pts: torch.Tensor, valid: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, n, n) soft click spots and distance to the nearest valid click (in view sides)."""
        b = pts.shape[0]
        ys, xs = torch.meshgrid(torch.arange(n, dtype=torch.float32, device=pts.device) + 0.5,
                                torch.arange(n, dtype=torch.float32, device=pts.device) + 0.5, indexing="ij")
        g = pts * (n / 256.0)                                         # 256² input frame -> n grid
        d2 = (xs[None, None] - g[..., 0, None, None]) ** 2 + (ys[None, None] - g[..., 1, None, None]) ** 2
        d2 = torch.where(valid[..., None, None], d2, torch.full_like(d2, 1e6))
        spot = torch.exp(-d2 / 2.0).sum(1, keepdim=True).clamp(max=1.0)
        dist = d2.min(1, keepdim=True).values.clamp(max=n ** 2 * 2).sqrt() / n
        if b and not valid.any():
            dist = torch.ones_like(dist)
        return spot, dist

    def forward(self, emb: torch.Tensor, pos: torch.Tensor, pos_valid: torch.Tensor,
                neg: torch.Tensor, neg_valid: torch.Tensor) -> torch.Tensor:
        if emb.shape[-1] == GRID and self.pool > 1:   # a view embedding; training passes it pooled already
            emb = F.avg_pool2d(emb, self.pool)
        g = F.normalize(self.proj(emb), dim=1)
        n = GRID // self.pool
        pspot, pdist = self.click_maps(pos, pos_valid, n)
        nspot, ndist = self.click_maps(neg, neg_valid, n)
        proto_p = F.normalize((g * pspot).sum((2, 3)), dim=1)[..., None, None]
        proto_n = F.normalize((g * nspot).sum((2, 3)), dim=1)[..., None, None]
        has_n = neg_valid.any(1).float()[:, None, None, None]
        sim_p = (g * proto_p).sum(1, keepdim=True)
        sim_n = (g * proto_n).sum(1, keepdim=True) * has_n
        x = torch.cat([g, g * proto_p, g * proto_n * has_n, sim_p, sim_n, pspot, nspot, pdist, ndist * has_n], 1)
        out = self.out(self.body(x))
        if self.pool == 1:
            return out
        return F.interpolate(out, scale_factor=self.pool, mode="bilinear", align_corners=False)


def save_click_head(head: ClickHead, out_dir: str | Path, extra: dict | None = None) -> Path:
    """Write ``model.safetensors`` (float16) + ``config.json`` with the weights' SHA-256."""
    from safetensors.torch import save_file

    from ..fsutil import atomic_path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in head.state_dict().items()}
    with atomic_path(out / "model.safetensors") as tmp:
        save_file(tensors, str(tmp))
    cfg = {"model": head.cfg, "weights_sha256": file_sha256(out / "model.safetensors"), **(extra or {})}
    with atomic_path(out / "config.json") as tmp:
        Path(tmp).write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    return out


def load_click_head(folder: str | Path = CLICK_HEAD_DIR) -> ClickHead:
    """The click head of ``folder``; its weights' hash must match config.json, and for the
    shipped head also the hash fixed in this module, whatever its config.json says."""
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    sha = file_sha256(folder / "model.safetensors")
    want = CLICK_HEAD_SHA256 if folder.resolve() == CLICK_HEAD_DIR else cfg.get("weights_sha256")
    if sha != want:
        raise ValueError(f"click head weights {folder / 'model.safetensors'} have SHA-256 {sha}, expected {want}")
    model = cfg.get("model", {})
    head = ClickHead(int(model.get("in_channels", 256)), int(model.get("dim", 32)), int(model.get("pool", POOL)))
    head.load_state_dict({k: v.float() for k, v in load_file(str(folder / "model.safetensors")).items()}, strict=True)
    head.requires_grad_(False)
    return head.eval()
