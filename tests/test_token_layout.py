"""The fast inference paths give what the upstream (vendored SAM / TinyViT) modules give."""
import pytest
import torch

from promptseg.model.decoder import DecoderConfig, PromptDecoder
from promptseg.model.segmenter import prompt_batch
from test_model import _fake_text


@pytest.mark.parametrize("dense", [True, False])
def test_token_layout_decoder_matches_sam_modules_on_pretrained_weights_and_gradients(dense):
    """Same masks, presence and attention as SAM's own module calls (sam_layout.py) with
    LiteMedSAM's decoder weights, on a non-square crop (training), with and without a dense
    prompt and pixel-branch features; and the same gradients, so training is unchanged too."""
    torch.manual_seed(0)
    dec = PromptDecoder(DecoderConfig())       # LiteMedSAM's pretrained decoder
    emb = torch.randn(2, 256, 12, 20)
    pb = prompt_batch(_fake_text(2), [0, 1], n_tiles=2)
    pb.mask_prompt = torch.randn(4, 1, 48, 80) if dense else None
    pe = dec.dense_pe(12, 20, (64, 64))
    fine = torch.randn(2, 32, 48, 80) if dense else None
    dec.sam_layout = True
    ref = dec(emb, pb, pe, fine)
    dec.sam_layout = False
    out = dec(emb, pb, pe, fine)
    for got, want in zip((out.mask_logits, out.presence_logit, out.attention),
                         (ref.mask_logits, ref.presence_logit, ref.attention)):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    grads = []
    for masks in (out.mask_logits, ref.mask_logits):
        dec.zero_grad()
        masks.square().mean().backward(retain_graph=True)
        grads.append([p.grad.clone() for p in (dec.transformer.layers[1].cross_attn_token_to_image.k_proj.weight,
                                                dec.output_upscaling[0].weight, dec.text_token_proj.weight)])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4 * b.abs().max().item())


def test_tinyvit_inference_copy_matches_the_package_encoder_and_follows_weight_changes():
    """The rewritten encoder (folded BatchNorm, channels-last, fused bias) gives the package
    module's embedding; training-mode or grad-enabled forwards use the package module; new
    weights (an optimiser step, a loaded state) rebuild the copy."""
    from promptseg.model.backbones.litemedsam import LiteMedSAMBackbone

    torch.manual_seed(0)
    bb = LiteMedSAMBackbone().eval()
    x = torch.rand(2, 3, 256, 256)
    with torch.no_grad():
        bb.fast_inference = False
        want = bb(x)
        bb.fast_inference = True
        got = bb(x)
    assert got.is_contiguous()
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    first = bb._fast[1]
    with torch.no_grad():
        bb(x)
        assert bb._fast[1] is first                   # same weights: built once
        w = bb.encoder.neck[2].weight
        w.add_(torch.randn_like(w) * 0.05)            # in-place update, like an optimiser step
        changed = bb(x)
    assert bb._fast[1] is not first
    bb.fast_inference = False
    with torch.no_grad():
        torch.testing.assert_close(changed, bb(x), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(changed, got, atol=1e-3)
    bb.train()
    with torch.no_grad():
        y = bb(x[:1])       # training mode: batch statistics, the package module
    assert y.shape == (1, 256, 64, 64)
