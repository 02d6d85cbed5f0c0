"""Which prompts the default model (or the project) knows, by the real MiniLM text encoder."""
import numpy as np
import pytest

from promptseg.inference.vocabulary import (KNOWN_SIMILARITY, accepted_classes, class_knowledge, presence_text,
                                            unknown_message)


@pytest.fixture(scope="module")
def on_sample(default_predictor, nuclei):
    default_predictor.set_image(nuclei.items[0].image)
    return default_predictor


def test_default_model_knows_nucleus_not_spleen(on_sample, nuclei):
    r = on_sample.predict(["nucleus", "spleen", "left kidney", "cell nucleus", "nuclei", "left hippocampus"])
    assert r.known.tolist() == [True, False, False, True, True, True]
    assert r.nearest[0] == "nucleus" and r.nearest_similarity[0] == pytest.approx(1.0)
    assert r.nearest[3] == "nucleus" and KNOWN_SIMILARITY <= r.nearest_similarity[3] < 1
    assert r.nearest_similarity[1] < KNOWN_SIMILARITY
    # the known class still segments the sample well (its own map: synonyms compete for labels)
    gold = nuclei.items[0].mask > 0
    pred = r.probs[0] > 0.5
    assert 2 * (pred & gold).sum() / (pred.sum() + gold.sum()) > 0.7


def test_threshold_separates_synonyms_from_other_organs(default_predictor):
    vocab = default_predictor.known_classes
    synonyms = ["nuclei", "cell nucleus", "hippocampal formation", "frontal cortex", "globus pallidus",
                "thalamic nucleus", "cerebellar vermis", "occipital cortex"]
    others = ["spleen", "kidney", "liver", "ventricle", "polyp", "lung", "tumour", "optic disc", "skin lesion",
              "blood vessel", "heart", "pancreas", "aorta", "retina", "mitochondria", "background"]
    k = class_knowledge(synonyms + others, vocab, default_predictor.text)
    assert k.known[:len(synonyms)].all(), dict(zip(synonyms, k.similarity))
    assert not k.known[len(synonyms):].any(), dict(zip(others, k.similarity[len(synonyms):]))


def test_accepted_project_labels_make_a_class_known(on_sample, tmp_path, nuclei):
    from promptseg.project import Project

    img = nuclei.items[0].image
    with Project.create(tmp_path / "p") as proj:
        proj.add_image(img, name="a")
        proj.save_label("a", np.zeros(img.shape[:2], np.uint8), ["spleen"], "proposal")
        assert accepted_classes(proj) == set()          # a proposal is not an accepted label
        lab = np.zeros(img.shape[:2], np.uint8)
        lab[10:20, 10:20] = 1
        proj.save_label("a", lab, ["spleen"], "corrected")
        on_sample.project_classes = accepted_classes(proj)
    try:
        assert on_sample.project_classes == {"spleen"}
        r = on_sample.predict(["spleen", "liver"])
        assert r.known.tolist() == [True, False]
    finally:
        on_sample.project_classes = set()


def test_messages_never_put_a_number_on_an_empty_mask(on_sample):
    r = on_sample.predict(["nucleus", "spleen"])
    assert unknown_message(r.prompts, r.known) == "PromptSeg has not learnt 'spleen' yet: draw a box or click on one"
    assert unknown_message(r.prompts[:1], r.known[:1]) is None
    assert unknown_message(r.prompts, None) is None
    text = presence_text(r)
    assert "spleen: not learnt" in text and f"nucleus: {r.presence[0]:.2f}" in text
    r.labels[:] = 0
    assert "nucleus: nothing found" in presence_text(r)


def test_a_model_without_a_vocabulary_does_not_guess():
    from promptseg import Predictor
    from promptseg.model.segmenter import ModelConfig, PromptSegModel

    p = Predictor(PromptSegModel(ModelConfig.tiny()), device="cpu")
    p.set_image(np.zeros((64, 64), np.uint8))
    assert p.predict(["spleen"]).known is None
