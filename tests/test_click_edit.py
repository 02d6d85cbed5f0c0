"""The local edit of a corrective click on hand-made masks (its quality on real images:
tests/test_spatial_prompts.py and tests/test_napari_refine.py)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from promptseg.inference.click_edit import edit_shown, nearest_distance


def square(shape, r0, c0, r1, c1) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[r0:r1, c0:c1] = True
    return m


@pytest.mark.parametrize("seed", range(5))
def test_nearest_distance_is_the_distance_transform(seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((300, 260)) > 0.999
    for r, c in rng.integers(0, 260, (20, 2)):
        want = ndimage.distance_transform_edt(~mask)[r, c]
        assert nearest_distance(mask, int(r), int(c)) == pytest.approx(want)
    assert nearest_distance(np.zeros((50, 50), bool), 3, 4) is None


def test_an_inside_click_adds_the_answer_near_it_only():
    shown = square((200, 200), 50, 50, 100, 100)
    answer = square((200, 200), 50, 50, 100, 130) | square((200, 200), 150, 150, 190, 190)
    out = edit_shown(shown, answer, (75, 104), 1)       # 5 px right of the shown mask: reach 2 x 6 px
    assert out[75, 104] and out[shown].all()
    assert not out[150:, 150:].any()                    # the answer's far piece stays out
    assert out.sum() - shown.sum() < (answer & ~shown).sum()   # not all of the answer's growth
    assert out[75, 100:116].all() and not out[:, 117:].any()


def test_an_outside_click_cuts_near_it_and_keeps_the_rest():
    shown = square((200, 200), 20, 20, 180, 180)
    answer = square((200, 200), 20, 20, 60, 60)         # the fresh answer lost most of the object
    out = edit_shown(shown, answer, (170, 100), 0)      # 10 px inside the bottom border: reach 2 x 11 px
    assert not out[170, 100] and not out[149:180, 100].any()
    assert out[20:147, 20:180].all() and out[150:180, 20:70].all()    # the rest stays
    assert (shown & ~out).sum() < 0.1 * shown.sum()


def test_an_answer_that_ignores_the_click_gives_the_disk_up_to_the_border():
    shown = square((100, 100), 40, 40, 60, 60)
    out = edit_shown(shown, shown.copy(), (50, 66), 1)  # the answer did not grow: 6 px to the border
    assert out[50, 60:67].all() and out.sum() > shown.sum()
    assert not out[50, 75:].any()


def test_a_click_that_corrects_nothing_is_no_edit():
    shown = square((100, 100), 40, 40, 60, 60)
    assert edit_shown(shown, shown, (50, 50), 1) is None      # inside click already inside
    assert edit_shown(shown, shown, (10, 10), 0) is None      # outside click already outside
    assert edit_shown(np.zeros((100, 100), bool), shown, (50, 50), 1) is None   # nothing shown
