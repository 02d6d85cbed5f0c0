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


def test_prompt_cache_file_round_trips_and_refuses_other_encoders_or_damage(tmp_path):
    from promptseg.model.text import load_prompt_cache, prompt_cache_file, save_prompt_cache

    enc = TextEncoder()
    enc.encode(["nucleus", "left lung"])
    path = prompt_cache_file(tmp_path, enc.model_id)
    assert load_prompt_cache(path, enc.model_id) == {}   # no file yet: nothing cached
    save_prompt_cache(path, enc.cache, enc.model_id)
    back = load_prompt_cache(path, enc.model_id)
    assert set(back) == {"nucleus", "left lung"}
    for k, e in back.items():
        assert np.array_equal(e.pooled, enc.cache[k].pooled) and np.array_equal(e.tokens, enc.cache[k].tokens)
        assert e.n_tokens == enc.cache[k].n_tokens
    # The file alone decodes prompts where the encoder's weights are missing (a GPU machine).
    offline = TextEncoder(model_id="/nonexistent/model", cache=back)
    assert np.array_equal(offline.encode(["nucleus"])[0].pooled, enc.cache["nucleus"].pooled)
    with pytest.raises(ValueError, match="not 'other-encoder'"):
        load_prompt_cache(path, "other-encoder")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="corrupt prompt embedding cache"):
        load_prompt_cache(path, enc.model_id)
