import numpy as np
import pytest

from promptseg.model.text import LATERALITY, TextEncoder, parse_prompt, split_prompts


def test_split_prompts_handles_separators_case_and_duplicates():
    assert split_prompts("Left lung;  right lung ;\nheart; left lung") == ["left lung", "right lung", "heart"]


@pytest.mark.parametrize("bad", ["", "   ", ";;", "  ; ; ", "!!!", "\x00"])
def test_empty_or_odd_prompts_raise_clear_errors(bad):
    with pytest.raises(ValueError, match="prompt"):
        split_prompts(bad)


def test_laterality_is_parsed_by_rules_not_left_to_minilm():
    assert parse_prompt("Left hippocampus") == parse_prompt("hippocampus on the left side")
    p = parse_prompt("the putamen on the right side")
    assert p.laterality == LATERALITY["right"] and "right" not in p.text and "putamen" in p.text
    assert parse_prompt("left lung").laterality == LATERALITY["left"]
    assert parse_prompt("lung").laterality == 0
    assert parse_prompt("left and right lung").laterality == 0  # both sides: no side token


def test_real_minilm_embeddings_are_cached_and_meaningful():
    enc = TextEncoder()
    a, b, c = enc.encode(["cell nuclei", "nucleus", "the liver"])
    assert a.pooled.shape == (384,) and abs(np.linalg.norm(a.pooled) - 1) < 1e-4
    assert float(a.pooled @ b.pooled) > float(a.pooled @ c.pooled) + 0.2
    assert "nucleus" in enc.cache
    # A cache-only encoder (as on a GPU machine without the MiniLM weights) still answers.
    cached = TextEncoder(model_id="/nonexistent/model", cache=enc.cache)
    assert np.allclose(cached.encode(["nucleus"])[0].pooled, b.pooled)
    with pytest.raises(RuntimeError, match="not in the embedding cache"):
        cached.encode(["spleen"])
