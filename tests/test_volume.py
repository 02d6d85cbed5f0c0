"""3-D volumes slice by slice (engine/volume.py) with a real (tiny, untrained) Predictor."""
import numpy as np
import pytest

from promptseg.engine.volume import annotated_slices, propagate, propagation_order, propose_slices


@pytest.fixture(scope="module")
def tiny_predictor():
    from promptseg.model.segmenter import ModelConfig, PromptSegModel
    from promptseg.predictor import Predictor
    import torch

    torch.manual_seed(0)
    return Predictor(PromptSegModel(ModelConfig.tiny()).eval(), device="cpu")


def test_propagation_order_walks_outwards_from_the_nearest_seed():
    order = propagation_order(7, [1, 5])
    assert sorted(z for z, _ in order) == [0, 2, 3, 4, 6]
    done = {1, 5}
    for z, src in order:           # every slice comes after the neighbour it is prompted from
        assert abs(z - src) == 1 and src in done
        done.add(z)
    assert dict(order)[3] == 2      # tie between seeds 1 and 5: the lower seed's side
    with pytest.raises(ValueError, match="annotate at least one slice"):
        propagation_order(5, [])
    with pytest.raises(ValueError, match="outside"):
        propagation_order(5, [5])


def test_annotated_slices_are_the_ones_that_differ_from_the_proposal():
    prop = np.zeros((4, 6, 6), np.int32)
    prop[:, 2:4, 2:4] = 1
    lab = prop.copy()
    lab[2, 0, 0] = 1
    assert annotated_slices(lab, prop) == [2]
    assert annotated_slices(lab, None) == [0, 1, 2, 3]
    assert annotated_slices(np.moveaxis(lab, 0, 2), np.moveaxis(prop, 0, 2), axis=2) == [2]


def test_propose_every_slice_along_an_axis(tiny_predictor, rng):
    vol = rng.random((3, 40, 48)).astype(np.float32)
    res = list(propose_slices(tiny_predictor, vol, ["nucleus", "gland"], axis=2))
    assert [r.index for r in res] == list(range(48)) and res[-1].done == res[-1].total == 48
    assert res[0].labels.shape == (3, 40) and res[0].probs.shape == (2, 3, 40)
    assert res[0].labels.max() <= 2


def test_propagate_keeps_seeds_and_fills_every_other_slice(tiny_predictor, rng):
    vol = rng.random((5, 40, 40)).astype(np.float32)
    lab = np.zeros(vol.shape, np.int32)
    lab[2, 10:20, 10:20] = 1
    before = lab.copy()
    res = list(propagate(tiny_predictor, vol, lab, [2], ["nucleus"], axis=0))
    assert sorted(r.index for r in res) == [0, 1, 3, 4] and np.array_equal(lab, before)  # input untouched
    assert [r.index for r in res][:2] in ([1, 3], [3, 1])          # nearest slices first
    # The mask prompt reaches the decoder: a different seed gives a different neighbour.
    other = np.zeros_like(lab)
    other[2, 25:40, 0:40] = 1
    res2 = {r.index: r for r in propagate(tiny_predictor, vol, other, [2], ["nucleus"])}
    assert not np.array_equal(res2[1].probs, {r.index: r for r in res}[1].probs)
    with pytest.raises(ValueError, match="label values"):
        next(propagate(tiny_predictor, vol, lab * 3, [2], ["nucleus"]))
    with pytest.raises(ValueError, match="3-D"):
        next(propose_slices(tiny_predictor, vol[0], ["nucleus"]))
