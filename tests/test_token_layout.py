"""The fast inference paths give what the upstream (vendored SAM / TinyViT) modules give."""
import pytest
import torch

from promptseg.model.decoder import DecoderConfig, PromptDecoder
from promptseg.model.segmenter import prompt_batch
from sam_layout import sam_layout_decode
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
    ref = sam_layout_decode(dec, emb, pb, pe, fine)
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


def test_one_prompt_inference_path_matches_the_training_path_and_leaves_its_inputs():
    """One prompt per tile (the Predictor's usual case): without gradients the decoder skips
    the per-query copy of the image tokens and updates the keys in place; the result equals the
    grad-enabled path's, and the embedding and pixel features passed in are not modified."""
    torch.manual_seed(0)
    dec = PromptDecoder(DecoderConfig()).eval()
    emb = torch.randn(3, 256, 16, 16)
    fine = torch.randn(3, 32, 64, 64)
    pb = prompt_batch(_fake_text(1), [0], n_tiles=3)
    assert torch.equal(pb.image_index, torch.arange(3))
    emb0, fine0 = emb.clone(), fine.clone()
    with torch.no_grad():
        fast = dec(emb, pb, fine=fine)
    assert torch.equal(emb, emb0) and torch.equal(fine, fine0)
    slow = dec(emb, pb, fine=fine)
    for f in ("mask_logits", "presence_logit", "attention"):
        torch.testing.assert_close(getattr(fast, f), getattr(slow, f).detach(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n_exemplars, force_fold", [(1, False), (24, False), (1, True)])
def test_folded_and_unfolded_attention_and_merged_tokens_match_sam_modules(n_exemplars, force_fold, monkeypatch):
    """Few prompt tokens run the cross attentions folded (the image-side projections moved to
    the token side), many run them unfolded; without gradients, equal tokens (padding words,
    points, exemplars) are merged first. Both branches, merged or not, give SAM's results and
    its gradients (the folded branch with gradients: forced, as training has >= 19 tokens)."""
    from promptseg.model import token_layout

    torch.manual_seed(0)
    dec = PromptDecoder(DecoderConfig())
    emb = torch.randn(2, 256, 12, 20)
    pb = prompt_batch(_fake_text(2), [0, 1], n_tiles=2)      # 3 and 4 words: 13 and 12 padding
    pb.points = torch.rand(4, 2, 2) * 40
    pb.point_labels = torch.tensor([[1, -1]] * 4)
    pb.boxes = torch.tensor([[3.0, 4.0, 30.0, 20.0], [float("nan")] * 4] * 2)
    pb.exemplars = torch.randn(4, n_exemplars, 256)
    pb.exemplar_mask = torch.ones(4, n_exemplars, dtype=torch.bool)
    pb.exemplar_mask[1::2, 0] = False
    pe = dec.dense_pe(12, 20, (64, 64))
    fa = dec.transformer.final_attn_token_to_image
    # 24 tokens (12 once merged): unfolded (folded); 47 tokens (35 once merged): unfolded
    assert not token_layout._fold(fa, 24) and token_layout._fold(fa, 12) and not token_layout._fold(fa, 35)
    if force_fold:
        monkeypatch.setattr(token_layout, "_fold", lambda a, tokens: True)
    params = [dec.transformer.layers[1].cross_attn_token_to_image.k_proj.weight,
              dec.transformer.layers[0].cross_attn_image_to_token.q_proj.weight,
              dec.transformer.layers[1].cross_attn_image_to_token.out_proj.bias,
              fa.k_proj.weight, fa.v_proj.bias, dec.text_pad.weight, dec.exemplar_proj.weight]
    results = []
    for decode in (lambda *a: sam_layout_decode(dec, *a), dec):
        with torch.no_grad():
            merged = decode(emb, pb, pe)
        out = decode(emb, pb, pe)
        dec.zero_grad()
        (out.mask_logits.square().mean() + out.attention.sum() + out.presence_logit.sum()).backward()
        results.append((merged, out, [p.grad.clone() for p in params]))
    (ref_ng, ref, ref_grads), (got_ng, got, got_grads) = results
    for a, b in ((got_ng, ref_ng), (got, ref)):
        for f in ("mask_logits", "presence_logit", "attention", "mask_token"):
            torch.testing.assert_close(getattr(a, f), getattr(b, f), rtol=1e-4, atol=1e-4)
    for a, b in zip(got_grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4 * b.abs().max().item())


def test_tinyvit_inference_copy_matches_the_module_and_follows_weight_changes():
    """The inference copy (folded BatchNorm, channels-last, fused ops) gives the unfolded
    module's embedding (the package's module: tests/test_tinyvit.py); training-mode or
    grad-enabled forwards use the module itself; new weights (an optimiser step, a loaded
    state) rebuild the copy."""
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
    first = bb._fast[256][1]
    with torch.no_grad():
        bb(x)
        assert bb._fast[256][1] is first                   # same weights: built once
        w = bb.encoder.neck[2].weight
        w.add_(torch.randn_like(w) * 0.05)            # in-place update, like an optimiser step
        changed = bb(x)
    assert bb._fast[256][1] is not first
    bb.fast_inference = False
    with torch.no_grad():
        torch.testing.assert_close(changed, bb(x), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(changed, got, atol=1e-3)
    bb.train()
    with torch.no_grad():
        y = bb(x[:1])       # training mode: batch statistics, the package module
    assert y.shape == (1, 256, 64, 64)


def test_bfloat16_encoder_is_close_to_float32_and_follows_weight_changes():
    """The CPU's bfloat16 encoder copy (opt-in, for CPUs with native bfloat16) gives embeddings
    within bfloat16 rounding of the float32 ones, fused ops included, and is rebuilt when the
    weights change; on a CPU without native bfloat16 it is refused with a message."""
    from promptseg.model.backbones.litemedsam import LiteMedSAMBackbone
    from promptseg.model.backbones.reduced_precision import BFloat16Encoder, bfloat16_supported
    from promptseg.model.fused_ops import fused_ops_work

    bb = LiteMedSAMBackbone().eval()
    if not bfloat16_supported():
        with pytest.raises(ValueError, match="no native bfloat16"):
            BFloat16Encoder(bb, "cpu")
        return
    assert fused_ops_work(torch.bfloat16) in (True, False)   # checked, not assumed
    torch.manual_seed(0)
    x = torch.rand(2, 3, 256, 256)
    enc = BFloat16Encoder(bb, "cpu")
    with torch.no_grad():
        want, got = bb(x), enc(x)
    assert got.dtype == torch.float32 and got.shape == want.shape
    err = (got - want).abs()
    # bfloat16 keeps ~3 digits; through 12 blocks the error is ~4 % of a typical value (measured)
    assert err.mean() < 0.08 * want.abs().mean() and err.max() < 0.25 * want.abs().max()
    first = enc._copy
    with torch.no_grad():
        w = bb.encoder.neck[2].weight
        w.add_(torch.randn_like(w) * 0.05)
        changed = enc(x)
    assert enc._copy is not first
    assert (changed - got).abs().mean() > 10 * err.mean()
    with pytest.raises(ValueError, match="on CUDA use float16"):
        BFloat16Encoder(bb, "cuda")
