"""Training the click head: object sampling, and a short run on a real image learns to grow clicks."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_spatial_prompts import brain_slice

from promptseg.model.click_head import ClickHead, load_click_head, save_click_head
from promptseg.training.click_head import (ClickTrainConfig, ClickView, head_logits, object_weights,
                                           train_click_head, view_masks)
from promptseg.training.evaluate import dice


def _square(size: int, at: int = 0) -> np.ndarray:
    m = np.zeros((256, 256), bool)
    m[at:at + size, at:at + size] = True
    return m


def test_balanced_sampling_gives_each_kind_and_size_the_same_share():
    emb = torch.zeros(256, 64, 64)
    # many small "nuclei", few large "anatomy" objects of two sizes
    nuclei = ClickView(emb, np.stack([_square(6, 2 * i) for i in range(20)]), ("nuclei",) * 20)
    anatomy = ClickView(emb, np.stack([_square(100), _square(100, 5), _square(30)]), ("anatomy",) * 3)
    views = [nuclei, anatomy]
    objects = [(v, o) for v, view in enumerate(views) for o in range(len(view.masks))]
    w = object_weights(views, objects, balanced=True)
    assert w.sum() == pytest.approx(1.0)
    by_kind = {k: sum(p for (v, _), p in zip(objects, w) if views[v].sources[0] == k) for k in ("nuclei", "anatomy")}
    assert by_kind["nuclei"] == pytest.approx(0.5) and by_kind["anatomy"] == pytest.approx(0.5)
    # the one 30-pixel-side object is as likely as the two large ones together
    assert w[-1] == pytest.approx(w[-2] + w[-3])
    assert np.allclose(object_weights(views, objects, balanced=False), 1 / len(objects))
    # a larger share for one kind: nuclei drawn twice as often as anatomy, sizes still spread
    w2 = object_weights(views, objects, balanced=True, shares={"nuclei": 2.0})
    assert sum(w2[:20]) == pytest.approx(2 / 3) and w2[-1] == pytest.approx(w2[-2] + w2[-3])


@pytest.fixture(scope="module")
def brain_view():
    from promptseg.inference.spatial import medsam_input
    from promptseg.io.normalise import hwc_view
    from promptseg.model.backbones.litemedsam import LiteMedSAMBackbone

    img, lab, classes = brain_slice()
    masks = [lab == k for k in range(1, len(classes) + 1) if (lab == k).sum() >= 60]
    x, scale = medsam_input(hwc_view(img), (0, 0, *img.shape[:2]))
    with torch.no_grad():
        emb = LiteMedSAMBackbone(pretrained=True).eval()(x)[0]
    return ClickView(emb, view_masks(masks, scale), ("anatomy",) * len(masks))


def _one_click_dice(head: ClickHead, view: ClickView) -> float:
    from scipy import ndimage

    scores = []
    for m in view.masks:
        d = ndimage.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
        r, c = np.unravel_index(int(np.argmax(d)), d.shape)
        with torch.no_grad():
            lg = head_logits(head, view.emb[None].float(), [[((c + 0.5, r + 0.5), True)]])
        up = torch.nn.functional.interpolate(lg, size=m.shape, mode="bilinear", align_corners=False)[0, 0]
        scores.append(dice(up.numpy() > 0, m))
    return float(np.mean(scores))


@pytest.mark.parametrize("pool", [1, 2])
def test_a_short_run_learns_to_grow_clicked_structures(brain_view, pool, tmp_path):
    torch.manual_seed(0)
    untrained = _one_click_dice(ClickHead(pool=pool), brain_view)
    head = train_click_head([brain_view], ClickTrainConfig(steps=80, batch=8, lr=3e-3, pool=pool), log=lambda s: None)
    trained = _one_click_dice(head, brain_view)
    assert trained >= 0.5 and trained >= untrained + 0.2, (untrained, trained)
    # saved and loaded with its pooling, hash checked, the same answers
    loaded = load_click_head(save_click_head(head, tmp_path / "head"))
    assert loaded.pool == pool
    assert _one_click_dice(loaded, brain_view) == pytest.approx(trained, abs=0.02)
    # fine-tuning starts from the given head (its pool kept, the given head left as it was)
    before = {k: v.clone() for k, v in loaded.state_dict().items()}
    tuned = train_click_head([brain_view], ClickTrainConfig(steps=10, batch=8, lr=1e-4, pool=3 - pool),
                             log=lambda s: None, init=loaded)
    assert tuned.pool == pool and all(torch.equal(before[k], v) for k, v in loaded.state_dict().items())
    assert _one_click_dice(tuned, brain_view) >= trained - 0.1
