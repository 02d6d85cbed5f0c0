"""The spatial decoder's own forward (row layout, folded cross attention, layer 0 on prepared
keys, only the asked masks, optionally only the grid cells a view needs) gives SAM's
``MaskDecoder.predict_masks`` answers with the same weights, on a real embedding."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from promptseg.inference.spatial import SpatialSegmenter
from promptseg.io.samples import sample_data_dir
from promptseg.model.spatial import ViewKeys


@pytest.fixture(scope="module")
def view():
    seg = SpatialSegmenter()
    img = np.asarray(Image.open(sample_data_dir() / "nuclei" / "images" / "nuclei_00.png"))
    seg.set_image(img)
    return seg.box_decoder, seg.view(seg.full_rect()).emb


def _reference(dec, emb, sparse, dense):
    return dec.mask_decoder.predict_masks(image_embeddings=emb, image_pe=dec.prompt_encoder.get_dense_pe(),
                                          sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense)


def _prompts(kind: str) -> dict:
    if kind == "box":
        return {"boxes": torch.tensor([[60.0, 40.0, 120.0, 110.0]])}
    if kind == "points":
        return {"points": torch.tensor([[[90.0, 70.0], [10.0, 200.0]]]), "point_labels": torch.tensor([[1, 0]])}
    # enough clicks that the cross attentions run unfolded (heads x tokens > internal dim)
    g = torch.Generator().manual_seed(0)
    return {"points": torch.rand(1, 14, 2, generator=g) * 255, "point_labels": (torch.arange(14) % 3 != 0)[None].long()}


def _assert_same(masks, iou, ref_masks, ref_iou):
    assert masks.shape == ref_masks.shape
    torch.testing.assert_close(masks, ref_masks, atol=2e-3, rtol=1e-3)
    torch.testing.assert_close(iou, ref_iou, atol=1e-4, rtol=1e-3)
    # the masks themselves agree pixel for pixel where the answer is not on the fence
    sure = ref_masks.abs() > 1e-2
    assert torch.equal((masks > 0)[sure], (ref_masks > 0)[sure])


@pytest.mark.parametrize("kind", ["box", "points", "many_points"])
def test_decoder_matches_sams_predict_masks(view, kind):
    dec, emb = view
    kwargs = _prompts(kind)
    with torch.no_grad():
        box = kwargs["boxes"][:, None] if "boxes" in kwargs else None
        pts = (kwargs["points"], kwargs["point_labels"]) if "points" in kwargs else None
        sparse, dense = dec.prompt_encoder(points=pts, boxes=box, masks=None)
        ref_masks, ref_iou = _reference(dec, emb, sparse, dense)
        keys = dec.prepare(emb)
        for multimask, sl in ((False, slice(0, 1)), (True, slice(1, 4))):
            _assert_same(*dec(emb, multimask=multimask, **kwargs), ref_masks[:, sl], ref_iou[:, sl])
            _assert_same(*dec(keys, multimask=multimask, **kwargs), ref_masks[:, sl], ref_iou[:, sl])
        # only the grid cells that cover the asked rows and columns: their pixels are the same
        masks, iou = dec(keys, size=(201, 130), **kwargs)
        _assert_same(masks, iou, ref_masks[:, :1, :204, :132], ref_iou[:, :1])


def test_batched_views_and_mask_prompt(view):
    """Two views' prepared keys in one call answer as each alone; a mask prompt (a previous
    answer as the dense prompt) matches SAM's too."""
    dec, emb = view
    emb2 = emb.flip(-1)
    boxes = torch.tensor([[60.0, 40.0, 120.0, 110.0], [20.0, 30.0, 200.0, 90.0]])
    with torch.no_grad():
        both, iou = dec(ViewKeys.cat([dec.prepare(emb), dec.prepare(emb2)]), boxes=boxes)
        for i, e in enumerate((emb, emb2)):
            sparse, dense = dec.prompt_encoder(points=None, boxes=boxes[i:i + 1, None], masks=None)
            ref_masks, ref_iou = _reference(dec, e, sparse, dense)
            _assert_same(both[i:i + 1], iou[i:i + 1], ref_masks[:, :1], ref_iou[:, :1])
        prev = both[:1]
        sparse, dense = dec.prompt_encoder(points=None, boxes=boxes[:1, None], masks=prev)
        ref_masks, ref_iou = _reference(dec, emb, sparse, dense)
        _assert_same(*dec(emb, boxes=boxes[:1], mask_logits=prev), ref_masks[:, :1], ref_iou[:, :1])
        with pytest.raises(ValueError, match="mask prompt"):
            dec(dec.prepare(emb), boxes=boxes[:1], mask_logits=prev)
