"""The semi-supervised round: fusion rules, confidence, ramps, EMA, exemplar retrieval,
augmentation geometry, resume exactness, and a tiny real round."""
import random

import numpy as np
import pytest
import torch

from promptseg.training.augment import (D4_VIEWS, Geometry, apply_geometry, invert_geometry, photometric_view,
                                      strong_features)
from promptseg.training.dataset import class_prompts, make_item
from promptseg.inference.embeddings import embed_image, tile_pixels
from promptseg.training.exemplars import Template, TemplateBank, similarity_prompts
from promptseg.training.pseudo import (binary_pseudo_label, ema_alpha, ema_update, fuse_logits,
                                     multiclass_pseudo_label, sigmoid_ramp)
from promptseg.training.ssl import SSLTrainer, method_config, train_ssl
from promptseg.training.types import UnlabelledItem
from promptseg.training.train_state import load_state, save_state
from promptseg.io import load_sample
from promptseg.model.segmenter import ModelConfig, PromptSegModel
from promptseg.model.text import TextEncoder


# -- fusion --------------------------------------------------------------------------------
def test_teacher_and_text_disagree_gives_low_confidence_and_is_masked():
    z_t = torch.full((1, 4, 4), 3.0)
    z_g = torch.full((1, 4, 4), -3.0)
    target, conf = binary_pseudo_label(fuse_logits(z_t, z_g), tau=0.75)
    assert conf.sum() == 0                       # p = 0.5 everywhere: nothing supervises


def test_agreeing_experts_are_confident_and_keep_the_label():
    z = fuse_logits(torch.tensor([[[1.0, -1.0]]]), torch.tensor([[[1.0, -1.0]]]), torch.tensor([[[1.0, -1.0]]]))
    target, conf = binary_pseudo_label(z, tau=0.9)
    assert target.tolist() == [[[1.0, 0.0]]] and conf.tolist() == [[[1.0, 1.0]]]


def test_logit_fusion_avoids_the_probability_space_pitfall():
    # Two experts that both say "probably background" (p = 0.27). Summing probabilities and
    # squashing, as the seed code does, calls it foreground; logit fusion keeps background.
    z_t, z_g = torch.full((1, 2, 2), -1.0), torch.full((1, 2, 2), -1.0)
    seed_code = torch.sigmoid(torch.sigmoid(z_t) + torch.sigmoid(z_g))
    assert (seed_code > 0.5).all()
    target, _ = binary_pseudo_label(fuse_logits(z_t, z_g), tau=0.5)
    assert target.sum() == 0


def test_missing_or_zero_weight_experts_contribute_nothing():
    z_t = torch.randn(2, 3, 3)
    assert torch.equal(fuse_logits(z_t, None, None), z_t)
    assert torch.equal(fuse_logits(z_t, torch.randn(2, 3, 3), torch.randn(2, 3, 3), 0.0, 0.0), z_t)


def test_veto_fusion_masks_a_flip_instead_of_taking_the_experts_label():
    # The teacher says foreground (z = 1); a confident text map says background (z = -4).
    z_t, z_g = torch.tensor([[[1.0, 1.0]]]), torch.tensor([[[-4.0, 2.0]]])
    summed, _ = binary_pseudo_label(fuse_logits(z_t, z_g, rule="sum"), tau=0.75)
    assert summed.tolist() == [[[0.0, 1.0]]]                 # sum flips pixel 0 to background
    target, conf = binary_pseudo_label(fuse_logits(z_t, z_g, rule="veto"), tau=0.75)
    assert conf.tolist() == [[[0.0, 1.0]]]                   # veto: pixel 0 is left out instead
    assert target[0, 0, 1] == 1.0                            # and agreement still raises confidence


def test_gate_fusion_lets_experts_decide_only_where_the_teacher_is_unsure():
    z_t = torch.tensor([[[8.0, 0.0]]])                       # confident | unsure teacher
    z_g = torch.tensor([[[-6.0, -3.0]]])
    z = fuse_logits(z_t, z_g, rule="gate")
    assert z[0, 0, 0] > 7.9                                  # σ(8) ≈ 1: the text map is ignored
    assert z[0, 0, 1] == pytest.approx(-3.0)                 # σ(0) = 0.5: the text map decides
    with pytest.raises(ValueError, match="fusion rule"):
        fuse_logits(z_t, z_g, rule="mean")


def test_multiclass_merge_picks_the_strongest_class_and_masks_unsure_pixels():
    z = torch.tensor([[[[4.0, -4.0, 0.1]]],      # class 1 logits at 3 pixels
                      [[[2.0, -4.0, 0.0]]]]).permute(1, 0, 2, 3)  # (1, K=2, 1, 3)
    labels, onehot, conf = multiclass_pseudo_label(z, tau=0.75)
    assert labels.tolist() == [[[1, 0, 1]]]
    assert conf.tolist() == [[[1.0, 1.0, 0.0]]]   # the last pixel: σ(0.1) = 0.52, unsure
    assert onehot[0, 0].tolist() == [[1.0, 0.0, 1.0]] and onehot[0, 1].sum() == 0


# -- schedules and the teacher ---------------------------------------------------------------
def test_sigmoid_ramp_rises_from_near_zero_to_one():
    values = [sigmoid_ramp(s, 100) for s in range(0, 121, 10)]
    assert values[0] < 0.01 and values[10] == 1.0 and values[-1] == 1.0
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert sigmoid_ramp(5, 0) == 1.0


def test_ema_alpha_warms_up_to_its_maximum():
    assert ema_alpha(0) == 0.0 and ema_alpha(1) == 0.5 and ema_alpha(10_000) == 0.99


def test_ema_update_moves_teacher_towards_student_and_skips_frozen_weights():
    student, teacher = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    with torch.no_grad():
        student.weight.fill_(1.0)
        teacher.weight.fill_(0.0)
        student.bias.fill_(5.0)
        teacher.bias.fill_(3.0)
    student.bias.requires_grad_(False)
    ema_update(teacher, student, alpha=0.9)
    assert torch.allclose(teacher.weight, torch.full((2, 2), 0.1))
    assert torch.equal(teacher.bias, torch.full((2,), 3.0))


# -- exemplar assistant ----------------------------------------------------------------------
def _template(name, direction, cls_proto):
    g = torch.nn.functional.normalize(torch.tensor(direction, dtype=torch.float32), dim=0)
    return Template(name, g, {0: torch.tensor(cls_proto, dtype=torch.float32)}, torch.tensor([0.0, 0.0, 1.0]))


def test_retrieval_picks_the_most_similar_exemplar_and_can_leave_one_out():
    bank = TemplateBank([_template("a", [1, 0, 0], [1, 0, 0]), _template("b", [0, 1, 0], [0, 1, 0]),
                         _template("c", [0.7, 0.7, 0], [1, 1, 0])])
    query = torch.nn.functional.normalize(torch.tensor([0.1, 1.0, 0.0]), dim=0)
    assert [t.name for t in bank.retrieve(query, 2)] == ["b", "c"]
    assert bank.retrieve(query, 1, exclude="b")[0].name == "c"


def test_exemplar_prompts_land_on_the_matching_structure():
    # An 8x8 token grid whose features match the class prototype only in a 2x2 blob.
    crop = torch.zeros(3, 8, 8)
    crop[2] = 1.0                      # background-like everywhere
    crop[:, 5:7, 1:3] = torch.tensor([1.0, 0.0, 0.0])[:, None, None]
    bank = TemplateBank([_template("a", [1, 0, 0], [1, 0, 0])])
    p = bank.prompts(crop, 0, bank.templates, n_pos=1, n_neg=1)
    x, y = p.points[0].tolist()
    assert p.point_labels.tolist() == [1, 0]
    assert 1 * 4 <= x < 3 * 4 and 5 * 4 <= y < 7 * 4          # positive point inside the blob
    assert p.box.tolist() == [4.0, 20.0, 11.0, 27.0]            # tight box around it (pixels)
    assert p.mask.shape == (1, 32, 32) and p.mask[0, 22, 6] > 0 > p.mask[0, 2, 30]
    assert bank.prompts(crop, 7, bank.templates) is None        # class absent from the bank


def test_similarity_prompts_drop_the_box_when_the_support_is_everywhere():
    p = similarity_prompts(torch.ones(4, 4), torch.zeros(1, 3))
    assert torch.isnan(p.box).all()


# -- augmentation ----------------------------------------------------------------------------
def test_weak_geometry_moves_features_and_labels_together():
    emb = torch.zeros(1, 4, 4)
    emb[0, 0, 3] = 1.0
    lab = torch.zeros(16, 16, dtype=torch.long)
    lab[0:4, 12:16] = 1
    for geo in (Geometry(1, False), Geometry(2, True), Geometry(3, True, 1.5)):
        side = 6 if geo.scale != 1.0 else 4
        e = apply_geometry(emb, geo, side)
        lb = apply_geometry(lab, geo, side * 4, nearest=True)
        y, x = np.unravel_index(int(e[0].argmax()), e[0].shape)
        assert lb[y * 4 + 1, x * 4 + 1] == 1


def test_dihedral_views_invert_exactly():
    x = torch.arange(2 * 5 * 5, dtype=torch.float32).reshape(2, 5, 5)
    assert len(set(D4_VIEWS)) == 8 and D4_VIEWS[0] == Geometry()
    for geo in D4_VIEWS:
        assert torch.equal(invert_geometry(apply_geometry(x, geo), geo), x)


def test_image_views_turn_images_like_tensors_and_keep_colour_channels_last():
    from promptseg.training.augment import image_view, view_suffix

    img = np.arange(4 * 6 * 3).reshape(4, 6, 3)
    names = {view_suffix(g) for g in D4_VIEWS}
    assert len(names) == 8 and view_suffix(D4_VIEWS[0]) == "" and view_suffix(D4_VIEWS[5]) == "@r90f"
    for geo in D4_VIEWS:
        v = image_view(img, geo)
        want = apply_geometry(torch.from_numpy(img).permute(2, 0, 1), geo).permute(1, 2, 0).numpy()
        assert np.array_equal(v, want) and v.flags.c_contiguous
        assert v.shape == ((6, 4, 3) if geo.rot90 % 2 else (4, 6, 3))


def test_teacher_ensemble_averages_views_mapped_back(tiny_setup):
    """With one view the ensemble is the plain teacher; with four it is the mean of the four
    rotated decodes, each rotated back (so it still lines up with the crop)."""
    tr = _trainer(tiny_setup, 4)
    geo = Geometry()
    views = tr.unlabelled_batch(geo)
    weak, px = views.weak, views.weak_pixels
    pb = tr.all_class_queries(weak.shape[0])
    pe = tr.full_pe[:, :weak.shape[-1], :weak.shape[-1]]
    t = tr.teacher
    torch.nn.init.normal_(t.pixel_branch.out.weight, std=0.1)   # so the pixels matter too

    def turned(r):
        w, p = torch.rot90(weak, r, (-2, -1)), torch.rot90(px, r, (-2, -1))
        return torch.rot90(t.decode(w, pb, pe, fine=t.fine_features(p)).mask_logits.float(), -r, (-2, -1))

    one = turned(0)
    tr.cfg.teacher_views = 1
    assert torch.allclose(tr.teacher_logits(weak, pb, pe, px), one)
    tr.cfg.teacher_views = 4
    manual = sum(turned(r) for r in range(4)) / 4
    assert torch.allclose(tr.teacher_logits(weak, pb, pe, px), manual, atol=1e-5)
    assert not torch.allclose(manual, one)


def test_expert_fade_scales_the_experts_from_one_to_zero(tiny_setup):
    tr = _trainer(tiny_setup, 11)                     # warm-up: 20 % of 11 steps
    assert tr.expert_scale() == 1.0
    tr.cfg.expert_fade = 1.0
    tr.step_count = 11                                # the end of the round
    assert tr.expert_scale() == pytest.approx(0.0)
    tr.step_count = 6
    assert 0 < tr.expert_scale() < 1


def test_strong_features_perturb_and_cut_out():
    emb = torch.ones(2, 8, 6, 6)
    out = strong_features(emb, random.Random(0), torch.Generator().manual_seed(0), cutout=0.5)
    assert not torch.equal(out, emb)
    assert ((out == 0).all(dim=1)).flatten(1).sum(1).min() >= 9     # a 3x3 cut-out per crop


@pytest.mark.parametrize("shape", [(32, 32), (32, 32, 3)])
def test_photometric_view_changes_intensities_but_not_shape_or_range(shape):
    img = np.linspace(0, 1, int(np.prod(shape)), dtype=np.float32).reshape(shape)
    out = photometric_view(img, np.random.default_rng(0))
    assert out.shape == img.shape and out.min() >= 0 and out.max() <= 1 and not np.allclose(out, img)


# -- the round -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_setup():
    s = load_sample("nuclei")
    torch.manual_seed(0)
    model = PromptSegModel(ModelConfig.tiny())
    lab, unl = [], []
    for i, it in enumerate(s.items[:5]):
        emb, grid = embed_image(model, it.image)
        if i < 2:
            lab.append(make_item(it.name, emb, grid, (it.mask > 0).astype(int), ["nucleus"], ["nucleus"],
                                 tile_pixels(it.image, grid.tile)))
        else:
            unl.append(UnlabelledItem(it.name, emb, pixels=tile_pixels(it.image, grid.tile)))
    return model, lab, unl, class_prompts(["nucleus"], TextEncoder(model.cfg.text_model))


def test_method_configs_switch_experts_off():
    assert not method_config("promptseg-no_text", 5).text_expert
    assert not method_config("promptseg-no_exemplar", 5).exemplar_expert
    mt = method_config("mean_teacher", 5)
    assert not (mt.text_expert or mt.exemplar_expert) and mt.unlabelled_weight > 0
    assert method_config("supervised", 5).unlabelled_weight == 0
    with pytest.raises(ValueError, match="unknown SSL method"):
        method_config("magic", 5)


def test_tiny_ssl_round_trains_on_pseudo_labels_and_ends_with_the_teacher(tiny_setup):
    base, lab, unl, prompts = tiny_setup
    model = PromptSegModel(ModelConfig.tiny())
    model.load_state_dict(base.state_dict())
    steps = []
    cfg = method_config("promptseg", 6, exemplar_supervision=0.5)   # the optional labelled exemplar path too
    last = train_ssl(model, lab, unl, prompts, cfg, on_step=steps.append)
    assert [s["step"] for s in steps] == list(range(1, 7))
    assert last["unlabelled"] > 0 and 0 < last["confident_fraction"] <= 1 and "exemplar_supervised" in last
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), base.state_dict().values()))


def _trainer(tiny_setup, steps):
    base, lab, unl, prompts = tiny_setup
    model = PromptSegModel(ModelConfig.tiny())
    model.load_state_dict(base.state_dict())
    return SSLTrainer(model, lab, unl, prompts, method_config("promptseg", steps, feedback_after=0.3,
                                                                 geometric=True, teacher_views=4))


def test_saved_state_resumes_to_the_same_weights_as_an_uninterrupted_round(tiny_setup, tmp_path):
    straight = _trainer(tiny_setup, 6)
    for _ in range(6):
        straight.step()
    first = _trainer(tiny_setup, 6)
    for _ in range(3):
        first.step()
    save_state(first, tmp_path / "state")
    resumed = _trainer(tiny_setup, 6)
    load_state(resumed, tmp_path / "state")
    assert resumed.step_count == 3
    for _ in range(3):
        resumed.step()
    for (k, a), b in zip(straight.teacher.state_dict().items(), resumed.teacher.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k


def test_ema_update_copies_buffers_by_name_even_when_eval_adds_one():
    class CachesInEval(torch.nn.Module):   # like TinyViT's attention-bias cache
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)
            self.register_buffer("running", torch.zeros(2))

        def train(self, mode=True):
            super().train(mode)
            if not mode:
                self.register_buffer("eval_cache", torch.ones(5))
            return self

    student, teacher = CachesInEval(), CachesInEval().eval()
    student.running.fill_(7.0)
    ema_update(teacher, student, 0.5)
    assert torch.equal(teacher.running, torch.full((2,), 7.0)) and teacher.eval_cache.shape == (5,)


def test_pixel_jitter_is_a_bounded_reproducible_strong_view():
    from promptseg.training.augment import jitter_pixels

    px = torch.rand(3, 3, 16, 16)
    assert jitter_pixels(px, torch.Generator().manual_seed(0), 0.0) is px
    a = jitter_pixels(px, torch.Generator().manual_seed(0), 0.3)
    b = jitter_pixels(px, torch.Generator().manual_seed(0), 0.3)
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    assert (a - px).abs().mean() > 0.02
    # per crop, not per batch: the three crops get different gains
    ratio = (a.mean((2, 3)) + 1e-6) / (px.mean((2, 3)) + 1e-6)
    assert not torch.allclose(ratio[0], ratio[1], atol=1e-3)


def test_label_jitter_reaches_the_supervised_loss_only_when_on(tiny_setup):
    """``label_jitter`` perturbs the labelled crops' pixels (the pixel branch's input); at 0 the
    labelled path draws no random number, so training is exactly what it was without it."""
    base, lab, _, prompts = tiny_setup

    def train(jitter):
        model = PromptSegModel(ModelConfig.tiny())
        model.load_state_dict(base.state_dict())
        train_ssl(model, lab, [], prompts, method_config("supervised", 3, label_jitter=jitter))
        return model.pixel_branch.state_dict()

    assert base.pixel_branch is not None
    off, off_again, on = train(0.0), train(0.0), train(0.4)
    assert all(torch.equal(off[k], off_again[k]) for k in off)
    assert any(not torch.allclose(off[k], on[k]) for k in off)


def test_a_round_saved_before_label_jitter_resumes_without_it():
    from promptseg.training.ssl_config import SSLConfig

    saved = SSLConfig(steps=4).to_dict()
    assert SSLConfig.from_dict(saved).label_jitter == 0.2
    del saved["label_jitter"]
    assert SSLConfig.from_dict(saved).label_jitter == 0.0
