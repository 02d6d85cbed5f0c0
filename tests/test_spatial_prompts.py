"""Boxes and clicks on images the text model never learnt: quality on real images, bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from promptseg.bench.prompts import gold_box, interior_point
from promptseg.training.evaluate import dice
from promptseg.inference.spatial import SpatialSegmenter
from promptseg.inference.spatial_result import predict_boxes, predict_points
from promptseg.io.samples import sample_data_dir


@pytest.fixture(scope="module")
def nuclei():
    d = sample_data_dir() / "nuclei"
    img = np.asarray(Image.open(d / "images" / "nuclei_00.png"))
    inst = np.asarray(Image.open(d / "instances" / "nuclei_00.png"))
    ids = [i for i in np.unique(inst) if i > 0 and (inst == i).sum() >= 40][:6]
    return img, [inst == i for i in ids]


def brain_slice() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The brain sample's axial slice 42: image, AAL label map, class names."""
    d = sample_data_dir() / "brain"
    classes = json.loads((d / "classes.json").read_text())["classes"]
    img = np.asarray(Image.open(d / "images" / "axial_z042.png"))
    lab = np.asarray(Image.open(d / "masks" / "axial_z042.png"))
    return img, lab, classes


@pytest.fixture(scope="module")
def brain():
    return brain_slice()


@pytest.fixture(scope="module")
def seg():
    return SpatialSegmenter()


def test_boxes_on_nuclei_are_separate_instances(seg, nuclei):
    img, gts = nuclei
    seg.set_image(img)
    pred = predict_boxes(seg, [gold_box(m) for m in gts])
    assert pred.masks.shape == (len(gts), *img.shape[:2]) and pred.source == "box"
    scores = [dice(p, g) for p, g in zip(pred.masks, gts)]
    assert np.mean(scores) >= 0.6, scores
    # each instance is its own label id
    assert set(np.unique(pred.labels)) <= set(range(len(gts) + 1)) and pred.labels.max() == len(gts)


def test_box_on_a_brain_structure(seg, brain):
    img, lab, classes = brain
    seg.set_image(img)
    gt = lab == classes.index("vermis") + 1
    from scipy import ndimage

    comp, n = ndimage.label(gt)
    piece = comp == 1 + int(np.argmax(ndimage.sum(gt, comp, range(1, n + 1))))
    assert dice(seg.segment_box(gold_box(piece)).mask, piece) >= 0.7


def _three_clicks(seg, gt: np.ndarray) -> np.ndarray:
    """One interior click, then two corrective clicks of a simulated annotator."""
    from promptseg.bench.prompts import add_corrective_clicks

    def segment(c, lab, shown=None):
        return seg.segment_points(c, lab, shown=shown)[0].mask

    clicks, labels = [interior_point(gt)], [1]
    shown = add_corrective_clicks(segment, gt, segment(clicks, labels), clicks, labels)
    return segment(clicks, labels, shown)


def test_clicks_on_nuclei_left_out_of_click_training(seg, nuclei):
    # the stardist (fluorescence) nuclei are left out of the click head's training
    img, gts = nuclei
    seg.set_image(img)
    pred = predict_points(seg, [interior_point(gts[0])])
    assert pred.source == "click" and pred.candidates is not None and len(pred.candidates) >= 1
    assert np.array_equal(pred.masks[0], pred.candidates[0]) and len(pred.candidate_scores) == len(pred.candidates)
    scores = [dice(predict_points(seg, [interior_point(g)]).masks[0], g) for g in gts]
    assert np.mean(scores) >= 0.6, scores
    scores3 = [dice(_three_clicks(seg, g), g) for g in gts]
    assert np.mean(scores3) >= 0.7, scores3


def test_clicks_on_cerebellar_structures_left_out_of_click_training(seg, brain):
    img, lab, classes = brain
    seg.set_image(img)
    from scipy import ndimage

    scores1, scores3 = [], []
    for name in ("vermis", "cerebellum"):
        gt = lab == classes.index(name) + 1
        comp, n = ndimage.label(gt)
        piece = comp == 1 + int(np.argmax(ndimage.sum(gt, comp, range(1, n + 1))))
        scores1.append(dice(seg.segment_points([interior_point(piece)])[0].mask, piece))
        scores3.append(dice(_three_clicks(seg, piece), piece))
    assert np.mean(scores1) >= 0.4, scores1
    assert np.mean(scores3) >= 0.55, scores3


@pytest.fixture(scope="module")
def check(tmp_path_factory):
    """The larger left-out click check: cerebellar structures on 38 Colin27 slices."""
    from pathlib import Path

    from promptseg.bench.prompt_data import make_cerebellar_check

    if not Path("/usr/share/mricron/templates/aal.nii.gz").is_file():
        pytest.skip("mricron-data (Colin27/AAL) is not installed")
    return make_cerebellar_check(tmp_path_factory.mktemp("check")).parent


def test_one_click_on_cerebellar_structures_takes_the_whole_structure(seg, check):
    # cerebellar classes are left out of click training; the blend of one click inside a
    # hemisphere is lobule-sized, and the loose answer (a wide box around it) leads where its
    # border follows a sharper image edge (every sixth target of the larger left-out check)
    from promptseg.bench.prompt_data import load_pair, read_targets

    blend, default, best_of_two = [], [], []
    for t in read_targets(check)[::6]:
        img, gt = load_pair(check, t)
        seg.set_image(img)
        masks = seg.click_masks([interior_point(gt)])
        scores = [dice(c.mask, gt) for c in masks.values()]
        blend.append(dice(masks["blend"].mask, gt))
        default.append(scores[0])
        best_of_two.append(max(scores[:2]))
    assert np.mean(default) >= np.mean(blend) + 0.08, (blend, default)
    assert np.mean(default) >= 0.55 and np.mean(best_of_two) >= 0.6, (default, best_of_two)


def test_corrective_clicks_keep_what_was_right(seg, check):
    # each corrective click edits the mask on screen near itself; decoding the clicks afresh
    # can drop a whole hemisphere the first click got (every third target of the left-out check)
    from promptseg.bench.prompt_data import load_pair, read_targets
    from promptseg.bench.prompts import add_corrective_clicks

    one, edited, fresh = [], [], []
    for t in read_targets(check)[::3]:
        img, gt = load_pair(check, t)
        gt = gt > 0
        seg.set_image(img)
        first = seg.segment_points([interior_point(gt)])[0].mask
        one.append(dice(first, gt))
        for out, keep in ((edited, True), (fresh, False)):
            def segment(c, lab, shown=None, keep=keep):
                return seg.segment_points(c, lab, shown=shown if keep else None)[0].mask

            clicks, labels = [interior_point(gt)], [1]
            shown = add_corrective_clicks(segment, gt, first, clicks, labels)
            out.append(dice(segment(clicks, labels, shown), gt))
    # measured: 76.3 vs 72.7; no target 0.1 below its one click (afresh: 3 of 24)
    assert np.mean(edited) >= max(0.75, np.mean(fresh) + 0.02), (edited, fresh)
    assert min(e - o for e, o in zip(edited, one)) > -0.1, (one, edited)


def test_click_head_weights_are_hash_checked(tmp_path):
    import shutil

    from promptseg.model.click_head import CLICK_HEAD_DIR, load_click_head

    shutil.copytree(CLICK_HEAD_DIR, tmp_path / "head")
    data = bytearray((tmp_path / "head" / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "head" / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256"):
        load_click_head(tmp_path / "head")


def test_clicks_as_instances(seg, nuclei):
    img, gts = nuclei
    seg.set_image(img)
    pts = [interior_point(g) for g in gts[:3]]
    pred = predict_points(seg, pts, instances=[0, 1, 2])
    assert pred.masks.shape[0] == 3 and pred.candidates is None
    assert np.mean([dice(p, g) for p, g in zip(pred.masks, gts[:3])]) >= 0.45


@pytest.mark.parametrize("box, words", [
    ((300, 300, 320, 330), "outside the image"),
    ((50, 60, 40, 80), "inverted"),
    ((50, 60, 50, 80), "zero size"),
    ((float("nan"), 0, 10, 10), "NaN"),
])
def test_bad_box_is_refused_and_changes_nothing(seg, nuclei, box, words):
    img, gts = nuclei
    seg.set_image(img)
    predict_boxes(seg, [gold_box(gts[0])])
    before = list(seg._cache)
    with pytest.raises(ValueError, match=words):
        predict_boxes(seg, [gold_box(gts[1]), box])   # the good box before it is not decoded either
    assert list(seg._cache) == before


@pytest.mark.parametrize("points, labels, words", [
    ([(10, 10), (-1, 5)], [1, 1], "click 1 .* outside the image"),
    ([(10, 400)], [1], "outside the image"),
    ([(10, 10)], [0], "inside the object"),
    ([(10, 10)], [2], "click labels"),
])
def test_bad_click_is_refused_and_changes_nothing(seg, nuclei, points, labels, words):
    img, _ = nuclei
    seg.set_image(img)
    before = list(seg._cache)
    with pytest.raises(ValueError, match=words):
        predict_points(seg, points, labels)
    assert list(seg._cache) == before


def test_predictor_boxes_and_clicks_whatever_the_class(nuclei):
    from promptseg import Predictor

    img, gts = nuclei
    p = Predictor.load(None)
    p.set_image(img)
    boxes = p.predict_boxes([gold_box(g) for g in gts[:3]])
    assert np.mean([dice(m, g) for m, g in zip(boxes.masks, gts[:3])]) >= 0.6
    clicks = p.predict_points([interior_point(gts[0])])
    assert dice(clicks.masks[0], gts[0]) >= 0.6
    current, cached = p._current, list(p._spatial._cache)
    with pytest.raises(ValueError, match="outside the image"):
        p.predict_points([(5, 5), (5, 10_000)])
    with pytest.raises(ValueError, match="inverted"):
        p.predict_boxes([(40, 40, 10, 60)])
    assert p._current is current and list(p._spatial._cache) == cached


def test_zoom_view_from_a_smaller_input_keeps_box_quality(nuclei):
    """The default zoom side (below the encoder's) against zoom views at the encoder's own side:
    the same box Dice on real nuclei; at the encoder's side the resized path is the plain one."""
    import torch

    from promptseg.inference.spatial import ZOOM_SIDE, medsam_input
    from promptseg.io.normalise import hwc_view
    from promptseg.model.backbones.litemedsam import TILE

    img, gts = nuclei
    scores = {}
    for side in (TILE, ZOOM_SIDE):
        s = SpatialSegmenter(zoom_side=side)
        s.set_image(img)
        scores[side] = [dice(s.segment_box(gold_box(m)).mask, m) for m in gts]
    assert ZOOM_SIDE < TILE
    assert np.mean(scores[ZOOM_SIDE]) >= 0.6 and np.mean(scores[ZOOM_SIDE]) >= np.mean(scores[TILE]) - 0.03, scores
    x, _ = medsam_input(hwc_view(img), (0, 0, 64, 64))
    with torch.no_grad():
        assert torch.equal(s.encoder.embed_resized(x), s.encoder(x))
