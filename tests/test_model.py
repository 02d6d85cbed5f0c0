"""Model parts on tiny configs, plus the real pretrained LiteMedSAM weights."""
import hashlib
import json

import numpy as np
import pytest
import torch

from promptseg.model.checkpoint import load_checkpoint, save_checkpoint
from promptseg.model.heads import merge_classes
from promptseg.model.segmenter import ModelConfig, PromptSegModel, prompt_batch
from promptseg.model.text import MAX_TOKENS, TextEmbedding


def _fake_text(k, dim=384, seed=0):
    g = np.random.default_rng(seed)
    return [TextEmbedding(g.standard_normal(dim).astype(np.float32), g.standard_normal((MAX_TOKENS, dim)).astype(np.float32), 3 + i)
            for i in range(k)]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return PromptSegModel(ModelConfig.tiny()).eval()


def test_decoder_handles_k_prompts_with_every_prompt_kind(tiny):
    x = torch.rand(2, 3, 64, 64)
    emb = tiny.embed(x)
    assert emb.shape == (2, 32, 16, 16)
    pb = prompt_batch(_fake_text(3), [0, 1, 2], n_tiles=2)
    n = 6
    pb.points = torch.tensor([[[10.0, 12.0], [40.0, 40.0]]]).repeat(n, 1, 1)
    pb.point_labels = torch.tensor([[1, -1]]).repeat(n, 1)
    pb.boxes = torch.tensor([[4.0, 4.0, 30.0, 30.0]]).repeat(n, 1)
    pb.boxes[1] = float("nan")
    pb.mask_prompt = torch.randn(n, 1, 64, 64)
    pb.exemplars = torch.randn(n, 2, 32)
    pb.exemplar_mask = torch.tensor([[True, False]]).repeat(n, 1)
    out = tiny.decode(emb, pb, fine=tiny.fine_features(x))
    assert out.mask_logits.shape == (6, 64, 64)
    assert out.presence_logit.shape == (6,)
    assert out.attention.shape == (6, 256)
    assert torch.allclose(out.attention.sum(-1), torch.ones(6), atol=1e-5)
    assert torch.isfinite(out.mask_logits).all()


def test_different_prompts_give_different_masks(tiny):
    x = torch.rand(1, 3, 64, 64)
    out = tiny.decode(tiny.embed(x), prompt_batch(_fake_text(2), [0, 0], n_tiles=1), fine=tiny.fine_features(x))
    assert not torch.allclose(out.mask_logits[0], out.mask_logits[1])


def test_pixel_branch_starts_neutral_then_shapes_the_mask_and_is_required(tiny):
    """A new branch leaves the decoder's masks as they were (its last layer starts at zero);
    once its weights move, the image's pixels change the mask; a model with the branch refuses
    to decode without them, with a message."""
    x = torch.rand(1, 3, 64, 64)
    pb = prompt_batch(_fake_text(1), [0], n_tiles=1)
    plain = PromptSegModel(ModelConfig.tiny())
    plain.cfg.pixel_branch = False
    plain.pixel_branch = None
    plain.load_state_dict({k: v for k, v in tiny.state_dict().items() if not k.startswith("pixel_branch.")})
    plain.eval()
    with torch.no_grad():
        emb = tiny.embed(x)
        fine = tiny.fine_features(x)
        assert fine.shape == (1, 4, 64, 64) and not fine.any()
        assert torch.equal(tiny.decode(emb, pb, fine=fine).mask_logits, plain.decode(emb, pb).mask_logits)
        moved = PromptSegModel(ModelConfig.tiny()).eval()
        moved.load_state_dict(tiny.state_dict())
        torch.nn.init.normal_(moved.pixel_branch.out.weight, std=0.1)
        fine2 = moved.fine_features(x)
        assert not torch.allclose(moved.decode(emb, pb, fine=fine2).mask_logits, plain.decode(emb, pb).mask_logits)
        edge = x.clone()
        edge[..., 32:] = 1.0 - edge[..., 32:]          # other pixels, same embedding
        assert not torch.allclose(moved.decode(emb, pb, fine=moved.fine_features(edge)).mask_logits,
                                  moved.decode(emb, pb, fine=fine2).mask_logits)
    with pytest.raises(ValueError, match="pixel"):
        tiny.decode(emb, pb)
    with pytest.raises(ValueError, match="pixel"):
        tiny.fine_features(None)


def test_checkpoints_written_before_the_pixel_branch_load_without_it():
    cfg = ModelConfig.tiny().to_dict()
    del cfg["pixel_branch"]
    assert ModelConfig.from_dict(cfg).pixel_branch is False
    assert ModelConfig().pixel_branch is True


def test_merge_is_cps4_argmax_with_background_threshold():
    probs = torch.tensor([[[0.9, 0.2, 0.4]], [[0.6, 0.7, 0.1]]])  # (K=2, 1, 3)
    assert merge_classes(probs, 0.5).tolist() == [[1, 2, 0]]


def test_checkpoint_roundtrip_is_exact_and_pickle_free(tiny, tmp_path):
    cache = {"nucleus": _fake_text(1)[0]}
    save_checkpoint(tiny, tmp_path / "ck", classes=["nucleus"], prompt_cache=cache)
    files = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert files == ["config.json", "model.safetensors"]
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert cfg["classes"] == ["nucleus"] and cfg["model"]["backbone"] == "unet"
    model2, cfg2, cache2 = load_checkpoint(tmp_path / "ck")
    x = torch.rand(1, 3, 64, 64)
    pb = prompt_batch(_fake_text(1), [0], 1)
    with torch.no_grad():
        a = tiny.decode(tiny.embed(x), pb, fine=tiny.fine_features(x)).mask_logits
        b = model2.decode(model2.embed(x), pb, fine=model2.fine_features(x)).mask_logits
    assert torch.equal(a, b)
    assert torch.equal(tiny.pixel_branch.down[0].weight, model2.pixel_branch.down[0].weight)
    assert np.array_equal(cache2["nucleus"].tokens, cache["nucleus"].tokens)


def test_corrupt_checkpoint_is_refused_with_a_message(tiny, tmp_path):
    save_checkpoint(tiny, tmp_path / "ck")
    w = tmp_path / "ck" / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[len(data) // 2] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt"):
        load_checkpoint(tmp_path / "ck")
    with pytest.raises(FileNotFoundError, match="not a promptseg checkpoint"):
        load_checkpoint(tmp_path / "nothing")


def test_litemedsam_backbone_and_decoder_start_from_pretrained_weights():
    from promptseg.model.backbones.litemedsam import sub_state

    model = PromptSegModel(ModelConfig())
    assert model.backbone.pretrained
    assert model.backbone.weights_sha256.startswith("79d8c9dc")
    enc = sub_state("image_encoder.")
    assert torch.equal(model.backbone.encoder.state_dict()["patch_embed.seq.0.c.weight"], enc["patch_embed.seq.0.c.weight"])
    dec = sub_state("mask_decoder.")
    assert torch.equal(model.decoder.transformer.layers[0].self_attn.q_proj.weight,
                       dec["transformer.layers.0.self_attn.q_proj.weight"])
    # The frozen backbone is not trainable and not stored in checkpoints.
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert not any(k.startswith("backbone.") for k in model.trainable_state_dict())
    with torch.no_grad():
        emb = model.embed(torch.rand(1, 3, 256, 256))
    assert emb.shape == (1, 256, 64, 64)


def test_the_pretrained_encoder_built_without_its_random_init_equals_the_initialised_one():
    from promptseg.model.backbones.litemedsam import LiteMedSAMBackbone, build_tinyvit, sub_state

    loaded = LiteMedSAMBackbone(pretrained=True).encoder.eval()   # built with init=False
    reference = build_tinyvit(init=True)
    reference.load_state_dict(sub_state("image_encoder."), strict=True)
    reference.eval()
    a, b = loaded.state_dict(), reference.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    buffers = dict(reference.named_buffers())   # non-persistent ones included
    assert all(torch.equal(v, buffers[k]) for k, v in loaded.named_buffers())
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(x), reference(x))


def test_a_frozen_backbone_embeds_in_eval_mode_even_while_the_model_trains():
    """TinyViT's BatchNorm must use its pretrained statistics however the model's mode is set:
    a training-mode embedding (batch statistics) is a different feature map (cosine ~0.5), and
    a model trained on those fails on the eval-mode embeddings the Predictor computes."""
    from promptseg.inference.embeddings import backbone_hash, embed_image

    model = PromptSegModel(ModelConfig(pixel_branch=False))
    bn = model.backbone.encoder.patch_embed.seq[0].bn
    stats = bn.running_mean.clone()
    img = (np.random.default_rng(0).random((256, 256)) * 255).astype(np.uint8)
    assert not model.backbone.training
    model.train()
    assert model.training and model.decoder.training and not model.backbone.training
    fresh, _ = embed_image(model, img)
    assert torch.equal(bn.running_mean, stats)            # pretrained statistics untouched
    model.eval()
    torch.testing.assert_close(embed_image(model, img)[0], fresh)
    # a cache folder written before this fix (BatchNorm in training mode) is not read
    old = [model.cfg.backbone, model.cfg.backbone_kwargs, model.backbone.weights_sha256]
    assert backbone_hash(model) != hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()


def test_per_tile_encoder_norm_uses_each_tiles_own_statistics_and_its_own_cache():
    """norm='per_tile' (AdaBN per tile): a tile's embedding does not depend on the tiles it is
    batched with, it follows the tile's contrast less than the pretrained statistics do, it
    survives a checkpoint's state-dict keys, and its embeddings never share a cache with the
    default encoder's."""
    from promptseg.inference.embeddings import backbone_hash
    from promptseg.model.backbones.litemedsam import LiteMedSAMBackbone

    tiled = PromptSegModel(ModelConfig(pixel_branch=False, backbone_kwargs={"norm": "per_tile"}))
    plain = PromptSegModel(ModelConfig(pixel_branch=False))
    x = torch.rand(3, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    low = 0.4 + 0.2 * x[:1]                                  # the first tile at a fifth of its contrast
    with torch.no_grad():
        alone, batched = tiled.embed(x[:1]), tiled.embed(x)[:1]
        torch.testing.assert_close(alone, batched)
        shift = [float((m.embed(low) - m.embed(x[:1])).norm() / m.embed(x[:1]).norm()) for m in (tiled, plain)]
    assert shift[0] < 0.5 * shift[1]
    assert set(tiled.backbone.state_dict()) == set(plain.backbone.state_dict())
    assert backbone_hash(tiled) != backbone_hash(plain)
    with pytest.raises(ValueError, match="norm"):
        LiteMedSAMBackbone(pretrained=False, norm="batch")
