"""Stage-1 training on real nuclei with a tiny from-scratch model: it must learn."""
import numpy as np
import pytest
import torch

from promptseg.training.dataset import class_prompts, make_item
from promptseg.inference.embeddings import EmbeddingCache, embed_image, tile_pixels
from promptseg.inference.decode import predict_labels
from promptseg.training.evaluate import dice
from promptseg.training.crops import sample_crop
from promptseg.training.ssl_config import LossWeights, TrainConfig
from promptseg.training.stage1 import stage1_losses, train_stage1
from promptseg.model.segmenter import ModelConfig, PromptSegModel
from promptseg.model.text import TextEncoder


@pytest.fixture(scope="module")
def prompts():
    return class_prompts(["nucleus", "cytoplasm"], TextEncoder())


def _items(model, sample):
    items = []
    for it in sample.items[:2]:
        emb, grid = embed_image(model, it.image)
        items.append(make_item(it.name, emb, grid, it.mask, ["nucleus"], ["nucleus", "cytoplasm"],
                               tile_pixels(it.image, grid.tile)))
    return items


def test_training_raises_dice_on_real_nuclei(nuclei, prompts):
    torch.manual_seed(0)
    cfg = ModelConfig.tiny()
    cfg.train_backbone = False          # train on cached embeddings of a fixed random U-Net
    model = PromptSegModel(cfg)
    items = _items(model, nuclei)
    it = nuclei.items[0]
    emb, grid = embed_image(model, it.image)

    def score():
        pred, _ = predict_labels(model, emb, grid, prompts.embs[:1], prompts.laterality[:1],
                                 pixels=tile_pixels(it.image, grid.tile))
        return dice(pred == 1, it.mask > 0)

    before = score()
    log = []
    train_stage1(model, items, prompts, TrainConfig(steps=80, lr=3e-3, crop=0, batch_tiles=4), on_step=log.append)
    after = score()
    assert len(log) == 80 and all(np.isfinite(d["total"]) for d in log)
    assert np.mean([d["seg"] for d in log[-10:]]) < np.mean([d["seg"] for d in log[:10]])
    assert after > max(before + 0.15, 0.5), (before, after)


def test_each_loss_term_can_be_switched_off(nuclei, prompts):
    import random

    model = PromptSegModel(ModelConfig.tiny())
    items = _items(model, nuclei)
    pe = model.decoder.dense_pe(model.grid_size, model.grid_size)
    crops = [sample_crop(items[0], 0, 4, random.Random(0))]
    torch.manual_seed(0)
    on = stage1_losses(model, crops, prompts.tensors("cpu"), pe, TrainConfig(), random.Random(0), "cpu")
    assert {"seg", "presence", "token_attention", "pixel_class", "text_guided", "contrastive"} <= set(on)
    off = TrainConfig(weights=LossWeights(contrastive=0, token_attention=0, pixel_class=0, text_guided=0))
    only_seg = stage1_losses(model, crops, prompts.tensors("cpu"), pe, off, random.Random(0), "cpu")
    assert set(only_seg) == {"seg", "presence", "total"}
    assert torch.isclose(only_seg["total"], only_seg["seg"] + 0.5 * only_seg["presence"])
    # SSS changes the contrastive term (uncertainty-aware similarities, DuSSS §3.2).
    torch.manual_seed(0)
    no_sss = stage1_losses(model, crops, prompts.tensors("cpu"), pe, TrainConfig(weights=LossWeights(sss=False)),
                           random.Random(0), "cpu")
    assert not torch.isclose(no_sss["contrastive"], on["contrastive"])


def test_embedding_cache_survives_corruption(nuclei, tmp_path):
    model = PromptSegModel(ModelConfig.tiny())
    cache = EmbeddingCache(tmp_path, model)
    img = nuclei.items[0].image
    a, grid = cache.get(img)
    files = list(cache.folder.glob("*.npz"))
    assert len(files) == 1
    assert torch.equal(cache.get(img)[0], a)   # read back: the very numbers the first call returned
    files[0].write_bytes(b"garbage")
    b, _ = cache.get(img)
    assert torch.equal(a, b)                   # recomputed, not trusted
