""""More like this" on real MoNuSeg H&E crops: a few gold nuclei find the others, in the same
image and in an image of another slide, with the default Predictor."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from promptseg.bench.data import by_split, load_seg_dir
from promptseg.bench.more_like_this import dice, pick_exemplars

MONUSEG = Path(os.environ.get("PROMPTSEG_DATA", "/work/shared/data")) / "monuseg"
CROP = 256

pytestmark = pytest.mark.skipif(not (MONUSEG / "captions.csv").is_file(),
                                reason=f"MoNuSeg not found at {MONUSEG} (set PROMPTSEG_DATA)")


@pytest.fixture(scope="module")
def monuseg():
    rows = load_seg_dir(MONUSEG)
    val, train = by_split(rows, "val")[0], by_split(rows, "train")[0]
    crop = lambda r: (r.image[:CROP, :CROP], r.mask[:CROP, :CROP])  # noqa: E731
    return crop(val), crop(train)


@pytest.fixture(scope="module")
def predictor():
    from promptseg import Predictor

    return Predictor.load(None, device="cpu")


def test_five_gold_nuclei_find_the_rest_of_the_image(monuseg, predictor):
    (img, gold), _ = monuseg
    predictor.set_image(img)
    exemplars = pick_exemplars(gold, 5, seed=0)
    r = predictor.more_like_this(exemplars)
    assert r.probs.shape == gold.shape and r.instances.dtype == np.int32
    assert dice(r.mask, gold) >= 0.70
    # it proposes many more instances than it was shown, and keeps the exemplars
    assert r.n_instances > 4 * 5
    assert r.mask[exemplars].mean() > 0.7


def test_exemplars_from_another_slide(monuseg, predictor):
    (img, gold), (train_img, train_gold) = monuseg
    ex = predictor.exemplars(pick_exemplars(train_gold, 5, seed=0), image=train_img)
    predictor.set_image(img)
    assert dice(predictor.more_like_this(ex).mask, gold) >= 0.65
    assert dice(predictor.more_like_this(ex, image=img).mask, gold) >= 0.65


def test_bad_exemplars_say_why(monuseg, predictor):
    (img, gold), _ = monuseg
    predictor.set_image(img)
    with pytest.raises(ValueError, match="empty"):
        predictor.more_like_this(np.zeros_like(gold))
    with pytest.raises(ValueError, match="shape"):
        predictor.more_like_this(np.ones((10, 10), bool))
    with pytest.raises(ValueError, match="no exemplar"):
        predictor.more_like_this([])
    with pytest.raises(ValueError, match="whole image"):
        predictor.more_like_this(np.ones_like(gold))


def test_bench_quick_writes_both_settings(tmp_path):
    from promptseg.cli import main

    assert main(["bench", "more-like-this", "--data", str(MONUSEG), "--quick", "--no-baseline",
                 "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["summary"]["same_image_dice"] >= 0.70
    assert doc["summary"]["cross_image_dice"] >= 0.65
    assert "same image" in (tmp_path / "results.md").read_text()
