"""The spatial decoder's own forward (fused attention, one positional grid, only the asked masks)
gives SAM's ``MaskDecoder.predict_masks`` answers with the same weights, on a real embedding."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from promptseg.inference.spatial import SpatialSegmenter
from promptseg.io.samples import sample_data_dir


@pytest.fixture(scope="module")
def view():
    seg = SpatialSegmenter()
    img = np.asarray(Image.open(sample_data_dir() / "nuclei" / "images" / "nuclei_00.png"))
    seg.set_image(img)
    return seg.box_decoder, seg.view(seg.full_rect()).emb


def _reference(dec, emb, sparse, dense):
    return dec.mask_decoder.predict_masks(image_embeddings=emb, image_pe=dec.prompt_encoder.get_dense_pe(),
                                          sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense)


@pytest.mark.parametrize("prompt", ["box", "points"])
def test_decoder_matches_sams_predict_masks(view, prompt):
    dec, emb = view
    with torch.no_grad():
        if prompt == "box":
            kwargs = {"boxes": torch.tensor([[60.0, 40.0, 120.0, 110.0]])}
            sparse, dense = dec.prompt_encoder(points=None, boxes=kwargs["boxes"][:, None], masks=None)
        else:
            kwargs = {"points": torch.tensor([[[90.0, 70.0], [10.0, 200.0]]]), "point_labels": torch.tensor([[1, 0]])}
            sparse, dense = dec.prompt_encoder(points=(kwargs["points"], kwargs["point_labels"]), boxes=None, masks=None)
        ref_masks, ref_iou = _reference(dec, emb, sparse, dense)
        for multimask, sl in ((False, slice(0, 1)), (True, slice(1, 4))):
            masks, iou = dec(emb, multimask=multimask, **kwargs)
            assert masks.shape == ref_masks[:, sl].shape
            torch.testing.assert_close(masks, ref_masks[:, sl], atol=2e-3, rtol=1e-3)
            torch.testing.assert_close(iou, ref_iou[:, sl], atol=1e-4, rtol=1e-3)
            # the masks themselves agree pixel for pixel where the answer is not on the fence
            sure = ref_masks[:, sl].abs() > 1e-2
            assert torch.equal((masks > 0)[sure], (ref_masks[:, sl] > 0)[sure])
