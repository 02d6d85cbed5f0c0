"""The bench's pixel baselines (`unet`, `litemedsam_ft`) and the `--folds` cross-validation:
the training loop's crops, tiled scoring, a short U-Net run on real MoNuSeg images, and the
folds' bookkeeping (an evaluation image never reaches a trainer of its fold)."""
import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from promptseg.bench import monuseg as mb
from promptseg.bench.data import by_split, load_seg_dir
from promptseg.bench.folds import cv_folds, run_monuseg_cv
from promptseg.bench.metrics import binary_scores
from promptseg.bench.pixel_train import predict_tiled, sample_crop
from promptseg.bench.unet_baseline import UNet, UNetTrainConfig, predict_unet, train_unet
from test_bench_monuseg import make_monuseg_like, one_thread, tiny_cfg, trained_on  # noqa: F401  (fixtures)

MONUSEG = Path(os.environ.get("PROMPTSEG_DATA", "/work/shared/data")) / "monuseg"
needs_monuseg = pytest.mark.skipif(not (MONUSEG / "captions.csv").is_file(),
                                   reason=f"MoNuSeg not found at {MONUSEG} (set PROMPTSEG_DATA)")


def test_unet_has_the_standard_widths():
    net = UNet(32)
    assert [d[0].out_channels for d in net.downs] == [32, 64, 128, 256, 512]
    assert net(torch.zeros(1, 3, 64, 64)).shape == (1, 64, 64)


def test_crops_keep_image_and_mask_together_and_colours_in_range():
    rng = random.Random(0)
    mask = torch.zeros(40, 50)
    mask[5:20, 10:45] = 1
    image = torch.stack([mask, torch.full_like(mask, 0.5), torch.rand(40, 50)])
    for _ in range(20):
        x, m = sample_crop([image], [mask], 32, 0.0, rng)
        assert torch.equal(x[0], m) and x.shape == (3, 32, 32)
        x, m = sample_crop([image], [mask], 64, 0.3, rng)   # larger than the image: zero padding
        assert x.shape == (3, 64, 64) and m.shape == (64, 64) and m.sum() == mask.sum()
        assert 0 <= float(x.min()) and float(x.max()) <= 1
        assert len(torch.unique(x[1][m > 0])) == 1   # one gain and offset per channel


def test_tiled_scoring_covers_an_image_that_is_no_multiple_of_the_tile():
    class Red(torch.nn.Module):   # logit: how red a pixel is
        def forward(self, x):
            return 10 * (x[:, 0] - 0.5)

    image = np.zeros((300, 200, 3), np.uint8)
    image[40:260, 30:70, 0] = 255
    image[0, 0] = 255   # keeps the normaliser's range fixed
    pred = predict_tiled(Red(), image, 128)
    truth = image[..., 0] > 127
    assert pred.shape == (300, 200) and np.array_equal(pred.astype(bool), truth)


@needs_monuseg
def test_a_short_unet_run_segments_unseen_monuseg_images():
    """Quality on real data: a small U-Net, a few steps on three train images, scored on two
    val images it never saw."""
    rows = load_seg_dir(MONUSEG)
    train, val = by_split(rows, "train")[:3], by_split(rows, "val")[:2]
    cfg = UNetTrainConfig(steps=150, width=8, crop=128, batch=4)
    net = train_unet([r.image for r in train], [r.mask for r in train], cfg)
    dice = [binary_scores(predict_unet(net, r.image), r.mask)["dice"] for r in val]
    assert np.mean(dice) > 0.45, dice
    with pytest.raises(ValueError, match="at least one"):
        train_unet([], [], cfg)


def test_folds_partition_the_images_deterministically():
    names = [f"im{i:02d}" for i in range(30)]
    folds = cv_folds(names, 5, seed=0)
    assert [len(f) for f in folds] == [6] * 5
    assert sorted(n for f in folds for n in f) == names
    assert folds == cv_folds(list(reversed(names)), 5, seed=0) and folds != cv_folds(names, 5, seed=1)
    with pytest.raises(ValueError, match="--folds"):
        cv_folds(names, 1)


def test_cross_validation_never_trains_on_a_folds_evaluation_images(tmp_path, nuclei, trained_on):
    data = make_monuseg_like(tmp_path / "data", nuclei)
    cfg = mb.MonusegConfig(data=str(data), out=str(tmp_path / "out"), labels=0.25, steps=2, seeds=[0],
                           methods=["supervised", "promptseg", "unet"], unet_steps=2, unet_batch=1, unet_width=4,
                           unet_crop=64, folds=4, fold_ids=[0, 2], cache=str(tmp_path / "cache"))
    res = run_monuseg_cv(cfg, model_cfg=tiny_cfg(), log=lambda s: None)
    folds = res["config"]["folds_images"]
    assert [len(f) for f in folds] == [4] * 4
    assert [(r["fold"], r["method"]) for r in res["results"]] == [
        (f, m) for f in (0, 2) for m in ("supervised", "promptseg", "unet")]
    for r in res["results"]:
        assert {p["image"] for p in r["per_image"]} == set(folds[r["fold"]])
    assert len(trained_on) == 4   # supervised and promptseg, on each of the two folds
    for (method, lab, unl), fold in zip(trained_on, (0, 0, 2, 2)):
        assert not set(folds[fold]) & (set(lab) | set(unl))
        assert len(lab) == 3 and len(unl) == (9 if method == "promptseg" else 0)
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| unet | 2 |" in md and "| supervised | 2 |" in md and " ± " in md
    on_disk = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(on_disk["results"]) == 6 and (tmp_path / "out" / "fold2" / "results.json").is_file()
    with pytest.raises(ValueError, match="--fold-ids"):
        run_monuseg_cv(mb.MonusegConfig(data=str(data), out=str(tmp_path / "o2"), folds=4, fold_ids=[4]),
                       model_cfg=tiny_cfg(), log=lambda s: None)


def test_cli_parses_the_pixel_baselines_and_folds():
    from promptseg.cli import build_parser

    a = build_parser().parse_args(["bench", "monuseg", "--data", "D", "--folds", "5", "--fold-ids", "0,3",
                                   "--unet-width", "16", "--unet-batch", "4", "--litemedsam-ft-steps", "9",
                                   "--litemedsam-ft-batch", "2", "--methods", "unet,litemedsam_ft"])
    assert (a.folds, a.fold_ids, a.unet_width, a.unet_batch) == (5, "0,3", 16, 4)
    cfg = mb.MonusegConfig(data="D", steps=20, unet_steps=7, lmft_steps=9, lmft_batch=2)
    assert "litemedsam_ft" in cfg.methods and "unet" in cfg.methods
    u, f = mb.unet_config(cfg, 1, "unet"), mb.unet_config(cfg, 1, "litemedsam_ft")
    assert (u.steps, u.batch, u.width, u.lr) == (7, 8, 32, 1e-3)
    assert (f.steps, f.batch, f.crop, f.encoder_lr) == (9, 2, 256, 1e-4)



@pytest.mark.slow
@needs_monuseg
def test_litemedsam_ft_starts_from_the_pretrained_encoder_and_trains_it():
    """The real pretrained weights are the start, one step moves the encoder (at its own rate)
    and the decoder, and a whole image is scored in the encoder's tiles."""
    from promptseg.bench.litemedsam_ft import LiteMedSAMFTConfig, predict_litemedsam_ft, train_litemedsam_ft
    from promptseg.model.backbones.litemedsam import sub_state

    row = by_split(load_seg_dir(MONUSEG), "train")[0]
    net = train_litemedsam_ft([row.image], [row.mask], LiteMedSAMFTConfig(steps=1, batch=1))
    start = sub_state("image_encoder.")
    state = net.encoder.encoder.state_dict()
    assert set(state) == set(start)
    assert any(v.dtype.is_floating_point and not torch.equal(v, start[k]) for k, v in state.items())
    pred = predict_litemedsam_ft(net, row.image[:300, :400])
    assert pred.shape == (300, 400) and set(np.unique(pred)) <= {0, 1}
    with pytest.raises(ValueError, match="tiles"):
        train_litemedsam_ft([row.image], [row.mask], LiteMedSAMFTConfig(steps=1, crop=128))
