"""The public Predictor facade on the real default model (pretrained LiteMedSAM + MiniLM)."""
import numpy as np
import pytest

from promptseg import Predictor


def test_info_reports_the_pretrained_backbone(default_predictor):
    info = default_predictor.info
    assert info["backbone"] == "litemedsam" and info["pretrained"] is True
    assert info["weights_sha256"].startswith("79d8c9dc")
    assert info["text_model"] and info["version"]


def test_predict_shapes_ranges_and_multiclass(default_predictor, nuclei):
    img = nuclei.items[0].image
    default_predictor.set_image(img)
    r = default_predictor.predict(["nucleus", "background tissue"])
    assert r.probs.shape == (2, *img.shape[:2]) and r.probs.dtype == np.float32
    assert 0.0 <= r.probs.min() and r.probs.max() <= 1.0
    assert r.labels.shape == img.shape[:2] and set(np.unique(r.labels)) <= {0, 1, 2}
    assert r.presence.shape == (2,) and ((0 <= r.presence) & (r.presence <= 1)).all()
    # The label map is the CPS4 merge of the probabilities.
    best = r.probs.max(0)
    assert ((r.labels == 0) == (best < 0.5)).all()


def test_large_image_is_tiled_at_native_resolution(default_predictor, rng):
    img = (rng.random((300, 520)) * 4000).astype(np.uint16)   # 16-bit, not a multiple of the tile
    default_predictor.set_image(img)
    assert default_predictor._current.grid.n_tiles == 6
    r = default_predictor.predict("nucleus")
    assert r.probs.shape == (1, 300, 520)


def test_embedding_is_cached_by_image_hash(default_predictor, nuclei):
    img = nuclei.items[1].image
    default_predictor.set_image(img)
    first = default_predictor._current
    default_predictor.set_image(nuclei.items[2].image)
    default_predictor.set_image(img.copy())          # same content, new array
    assert default_predictor._current is first


def test_rgba_and_float_inputs_are_accepted(default_predictor, rng):
    rgba = (rng.random((64, 80, 4)) * 255).astype(np.uint8)
    default_predictor.set_image(rgba)
    assert default_predictor.predict("nucleus").labels.shape == (64, 80)
    default_predictor.set_image(rng.random((70, 50)))
    assert default_predictor.predict("nucleus").labels.shape == (70, 50)


@pytest.mark.parametrize("image, match", [
    (np.zeros((2, 3, 16, 16)), "4-D"),
    (np.zeros((0, 16)), "zero-size|empty"),
    (np.full((16, 16), np.nan), "NaN"),
    (np.zeros((16, 16, 5)), "channels"),
])
def test_bad_images_raise_clear_errors(default_predictor, image, match):
    with pytest.raises(ValueError, match=match):
        default_predictor.set_image(image)


@pytest.mark.parametrize("prompts, match", [([], "no prompts"), ("", "empty prompt"), (["  "], "empty prompt"),
                                            ([3], "must be a string"), ("???", "no letters")])
def test_bad_prompts_raise_clear_errors(default_predictor, nuclei, prompts, match):
    default_predictor.set_image(nuclei.items[0].image)
    with pytest.raises(ValueError, match=match):
        default_predictor.predict(prompts)


def test_predict_before_set_image_is_an_error():
    p = Predictor.__new__(Predictor)
    p._current = None
    with pytest.raises(RuntimeError, match="set_image"):
        p.predict("nucleus")


def test_points_box_mask_and_exemplars_refine_on_the_cached_embedding(default_predictor, nuclei):
    item = nuclei.items[0]
    default_predictor.set_image(item.image)
    base = default_predictor.predict("nucleus")
    ex = default_predictor.exemplar_vector(item.mask > 0)
    assert ex.shape == (256,)
    r = default_predictor.predict("nucleus", points=np.array([[40, 40], [200, 10]]), point_labels=np.array([1, 0]),
                                  box=(10, 10, 120, 120), mask_prompt=base.probs,
                                  exemplars={"nucleus": ex[None]}, grounding=True)
    assert r.probs.shape == base.probs.shape and r.grounding.shape == base.probs.shape
    assert not np.allclose(r.probs, base.probs)
    with pytest.raises(ValueError, match="box"):
        default_predictor.predict("nucleus", box=(50, 50, 10, 10))
    with pytest.raises(ValueError, match="mask_prompt"):
        default_predictor.predict("nucleus", mask_prompt=base.probs[:, :10])


def test_grounding_map_reuses_the_cached_pixel_features(default_predictor, nuclei):
    """The text expert's map from the cached grounding features equals a fresh computation."""
    import torch

    default_predictor.set_image(nuclei.items[0].image)
    r = default_predictor.predict(["nucleus"], grounding=True)
    cur = default_predictor._need_image()
    assert cur.pix is not None
    text = default_predictor.text.encode(["nucleus"])
    pooled = torch.from_numpy(text[0].pooled)[None].float()
    fresh, _, _ = default_predictor.model.grounding(cur.emb, pooled)
    cached, _, _ = default_predictor.model.grounding(cur.emb, pooled, pix=cur.pix)
    assert torch.allclose(fresh, cached) and r.grounding.shape == r.probs.shape


def test_pixel_branch_model_predicts_like_the_training_path(nuclei):
    """A model with a (trained-looking) pixel branch: the Predictor computes the branch once
    per image and its masks match the benchmarks' decoding path (inference/decode.py)."""
    import torch

    from promptseg.inference.embeddings import embed_image, tile_pixels
    from promptseg.inference.decode import predict_labels
    from promptseg.model.segmenter import ModelConfig, PromptSegModel

    torch.manual_seed(0)
    model = PromptSegModel(ModelConfig.tiny()).eval()
    torch.nn.init.normal_(model.pixel_branch.out.weight, std=0.5)   # so the pixels change the masks
    pred = Predictor(model, device="cpu")
    image = nuclei.items[0].image
    pred.set_image(image)
    cur = pred._need_image()
    assert cur.fine is not None and cur.fine.shape[1:] == (4, 64, 64)
    first = cur.fine
    pred.set_image(image)                                              # cached: not recomputed
    assert pred._need_image().fine is first
    r = pred.predict(["nucleus"])
    emb, grid = embed_image(model, image)
    text = pred.text.encode(["nucleus"])
    _, probs = predict_labels(model, emb, grid, text, [0], pixels=tile_pixels(image, grid.tile))
    assert np.abs(r.probs - probs).max() < 1e-2                       # float16 cache vs float32
    _, without = predict_labels(model, emb, grid, text, [0], pixels=torch.zeros_like(tile_pixels(image, grid.tile)))
    assert np.abs(r.probs - without).max() > 0.05                      # the pixels do matter


@pytest.mark.parametrize("shape, dtype", [((512, 512), np.uint8), ((300, 520, 3), np.uint8), ((700, 260), np.uint16),
                                          ((3, 200, 300), np.int16), ((256, 256, 4), np.uint8), ((50, 60), bool),
                                          ((300, 300), np.float32)])
def test_device_side_scaling_gives_the_host_tiles_exactly(shape, dtype, rng):
    """The GPU path (8/16-bit images scaled through the lookup table where the pixels go) must
    be the same numbers as prepare_image + extract_tiles, and so must the pixel branch's uint8."""
    import torch

    from promptseg.inference.embeddings import image_tiles, quantise_tiles, tile_pixels
    from promptseg.io import prepare_image
    from promptseg.io.tiling import extract_tiles

    if dtype == np.float32:
        img = (rng.random(shape) * 40 - 3).astype(dtype)
    elif dtype is bool:
        img = rng.random(shape) > 0.5
    else:
        info = np.iinfo(dtype)
        img = rng.integers(max(info.min, -900), min(info.max, 40000), shape).astype(dtype)
    want, grid = extract_tiles(prepare_image(img), 256)
    want = torch.from_numpy(want).permute(0, 3, 1, 2)
    got, got_grid = image_tiles(img, 256, "cpu", scale_on_device=True)
    assert got_grid == grid and got.dtype == torch.float32 and torch.equal(got, want)
    old_quantisation = np.clip(np.rint(want.numpy() * 255.0), 0, 255).astype(np.uint8)
    assert np.array_equal(quantise_tiles(got).numpy(), old_quantisation)
    assert torch.equal(tile_pixels(img, 256), quantise_tiles(got))


def test_float16_encoder_is_refused_off_cuda_with_a_clear_message():
    from promptseg.model.segmenter import ModelConfig, PromptSegModel

    model = PromptSegModel(ModelConfig.tiny())
    with pytest.raises(ValueError, match="encoder_precision must be one of"):
        Predictor(model, device="cpu", encoder_precision="half")
    for precision in ("float16", "float16-compiled"):
        with pytest.raises(ValueError, match="needs a CUDA device"):
            Predictor(model, device="cpu", encoder_precision=precision)


def test_set_image_embeds_like_the_training_cache(default_predictor, rng):
    """The Predictor's embedding (device-side tiles) equals the one the training rounds cache
    (embed_image), for a 16-bit image of 3 x 2 tiles."""
    import torch

    from promptseg.inference.embeddings import embed_image

    img = rng.integers(0, 4096, (600, 400)).astype(np.uint16)
    default_predictor.set_image(img)
    cur = default_predictor._need_image()
    emb, grid = embed_image(default_predictor.model, img)
    assert cur.grid == grid and cur.shape == (600, 400)
    torch.testing.assert_close(cur.emb.float().cpu(), emb, rtol=0, atol=0)


def test_bfloat16_encoder_predictor_keeps_the_masks(default_predictor, nuclei, tmp_path):
    """encoder_precision="bfloat16" (CPUs with native bfloat16): about twice as fast to embed
    (docs/benchmarks.md), the 'nucleus' mask within a few percent of float32's; a disk cache
    (a project's embeddings/) keeps its embeddings apart from the float32 ones training reads."""
    from promptseg.model.backbones.reduced_precision import bfloat16_supported

    if not bfloat16_supported():
        pytest.skip("this CPU has no native bfloat16")
    p = Predictor(default_predictor.model, device="cpu", config=default_predictor.config,
                  prompt_cache=default_predictor.text.cache, encoder_precision="bfloat16")
    assert p.info["encoder_precision"] == "bfloat16"
    image = nuclei.items[0].image
    p.set_image(image)
    default_predictor.set_image(image)
    a = p.predict("nucleus").labels > 0
    b = default_predictor.predict("nucleus").labels > 0
    assert a.any() and 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.97
    assert not np.array_equal(p._need_image().emb.numpy(), default_predictor._need_image().emb.numpy())

    from promptseg.inference.embeddings import EmbeddingCache

    p.use_embedding_cache(tmp_path)
    p._cache.clear()
    p.set_image(image)
    (folder,) = tmp_path.iterdir()
    assert folder.name.endswith("-bfloat16") and len(list(folder.glob("*.npz"))) == 1
    np.testing.assert_allclose(p._need_image().emb.numpy(), p._disk.get(image)[0].numpy(), atol=0.02)
    training = EmbeddingCache(tmp_path, default_predictor.model)
    assert training.folder != folder and not training.path(p._need_image().sha).exists()


def test_bfloat16_decoder_keeps_the_masks_and_the_callers_model(default_predictor, nuclei):
    """decoder_precision="bfloat16" (CPUs with native bfloat16): the decoder's image-sized
    products run in bfloat16 on a copy of the model (the caller's stays float32), outputs stay
    float32, and the 'nucleus' mask stays within a few percent of float32's; refused elsewhere."""
    import torch

    from promptseg.model.backbones.reduced_precision import bfloat16_supported

    model = default_predictor.model
    if not bfloat16_supported():
        with pytest.raises(ValueError, match="native bfloat16"):
            Predictor(model, device="cpu", decoder_precision="bfloat16")
        return
    with pytest.raises(ValueError, match="decoder_precision must be"):
        Predictor(model, device="cpu", decoder_precision="float16")
    p = Predictor(model, device="cpu", config=default_predictor.config, prompt_cache=default_predictor.text.cache,
                  decoder_precision="bfloat16")
    assert p.model is not model and next(model.decoder.transformer.parameters()).dtype == torch.float32
    assert next(p.model.decoder.transformer.parameters()).dtype == torch.bfloat16
    image = nuclei.items[0].image
    for q in (p, default_predictor):
        q.set_image(image)
    r, want = p.predict("nucleus"), default_predictor.predict("nucleus")
    assert r.probs.dtype == np.float32 and r.probs.shape == want.probs.shape
    a, b = r.labels > 0, want.labels > 0
    assert a.any() and 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.97
    assert np.abs(r.probs - want.probs).max() > 1e-4          # really another arithmetic
