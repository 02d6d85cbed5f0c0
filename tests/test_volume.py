"""3-D volumes slice by slice (inference/volume.py) with a real (tiny, untrained) Predictor."""
import numpy as np
import pytest

from promptseg.inference.volume import annotated_slices, propagate, propagation_order, propose_slices


@pytest.fixture(scope="module")
def tiny_predictor():
    from promptseg.model.segmenter import ModelConfig, PromptSegModel
    from promptseg.inference.predictor import Predictor
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
    res = list(propagate(tiny_predictor, vol, lab, [2], ["nucleus"], axis=0, mode="model"))
    assert sorted(r.index for r in res) == [0, 1, 3, 4] and np.array_equal(lab, before)  # input untouched
    assert [r.index for r in res][:2] in ([1, 3], [3, 1])          # nearest slices first
    # The mask prompt reaches the decoder: a different seed gives a different neighbour.
    other = np.zeros_like(lab)
    other[2, 25:40, 0:40] = 1
    res2 = {r.index: r for r in propagate(tiny_predictor, vol, other, [2], ["nucleus"], mode="model")}
    assert not np.array_equal(res2[1].probs, {r.index: r for r in res}[1].probs)
    with pytest.raises(ValueError, match="label values"):
        next(propagate(tiny_predictor, vol, lab * 3, [2], ["nucleus"]))
    with pytest.raises(ValueError, match="3-D"):
        next(propose_slices(tiny_predictor, vol[0], ["nucleus"]))


def moving_disk_volume(n: int = 7, shift: int = 3, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A textured disk that moves ``shift`` pixels to the right per slice, and its labels."""
    rr, cc = np.mgrid[:size, :size]
    vol, lab = np.zeros((n, size, size), np.uint16), np.zeros((n, size, size), np.int32)
    for z in range(n):
        inside = (rr - size // 2) ** 2 + (cc - 14 - shift * z) ** 2 < 10 ** 2
        vol[z] = 1000 + 30000 * inside + 2000 * np.sin(rr / 3.0) * inside   # 16-bit, as CT/MR often are
        lab[z] = inside
    return vol, lab


def test_propagate_along_the_flow_follows_a_moving_structure_without_a_model():
    from promptseg.training.evaluate import per_class_dice

    vol, truth = moving_disk_volume()
    seeds = np.zeros_like(truth)
    seeds[0] = truth[0]
    before = seeds.copy()
    flow = {r.index: r for r in propagate(None, vol, seeds, [0], ["disk"])}   # mode "flow": no predictor
    assert sorted(flow) == list(range(1, 7)) and np.array_equal(seeds, before)    # input untouched
    assert flow[1].probs is None and flow[6].done == flow[6].total == 6
    dice = lambda p, z: per_class_dice(p, truth[z], 1)[0]                          # noqa: E731
    assert dice(truth[0], 6) < 0.2            # 18 px away: a copy of the seed misses the disk
    assert dice(flow[6].labels, 6) > 0.85     # the flow carried it along, slice by slice
    with pytest.raises(ValueError, match="mode must be one of"):
        next(propagate(None, vol, seeds, [0], ["disk"], mode="warp"))


def test_propagate_reuses_the_flows_it_was_given():
    """Flows kept from one run (the AAL bench's flow floor) serve a later run on the same volume
    with other seed labels: the same labels as computing them afresh; the flows given are the
    ones used (zero flows copy the seed unchanged)."""
    vol, truth = moving_disk_volume()
    seeds = np.zeros_like(truth)
    seeds[0] = truth[0]
    flows: dict = {}
    first = {r.index: r.labels for r in propagate(None, vol, seeds, [0], ["disk"], flows=flows)}
    assert sorted(flows) == [(z - 1, z) for z in range(1, 7)]
    kept = {k: v.copy() for k, v in flows.items()}
    other = seeds.copy()
    other[0] = np.roll(truth[0], 3, axis=0)   # other labels on the seed slice
    again = {r.index: r.labels for r in propagate(None, vol, other, [0], ["disk"], flows=flows)}
    fresh = {r.index: r.labels for r in propagate(None, vol, other, [0], ["disk"])}
    assert all(np.array_equal(again[z], fresh[z]) for z in fresh)
    assert not np.array_equal(again[6], first[6])
    assert flows.keys() == kept.keys() and all(np.array_equal(flows[k], kept[k]) for k in kept)
    still = {k: np.zeros_like(v) for k, v in flows.items()}
    copied = {r.index: r.labels for r in propagate(None, vol, seeds, [0], ["disk"], flows=still)}
    assert all(np.array_equal(copied[z], truth[0]) for z in copied)


def test_propagate_modes_with_a_model(tiny_predictor):
    from promptseg.inference.volume import CARRIED_SHARE

    vol, truth = moving_disk_volume(n=4)
    seeds = np.zeros_like(truth)
    seeds[0] = truth[0]
    run = lambda mode: {r.index: r for r in propagate(tiny_predictor, vol, seeds, [0], ["disk"], mode=mode)}  # noqa: E731
    flow, fused, model = run("flow"), run("flow+model"), run("model")
    assert sorted(fused) == sorted(model) == [1, 2, 3]
    # the model sees the carried labels in flow+model, the copied ones in model: different prompts
    assert not np.array_equal(fused[1].probs, model[1].probs)
    # flow+model: the carried labels, changed only where the model is confident
    p = fused[1].probs[0].astype(np.float32)
    keep = (flow[1].labels == 1) & (p > 0.5 / (1 - CARRIED_SHARE) - CARRIED_SHARE / (1 - CARRIED_SHARE) + 0.01)
    assert (fused[1].labels[keep] == 1).all()
    add = (flow[1].labels == 0) & (p < 0.5 / (1 - CARRIED_SHARE) - 0.01)
    assert (fused[1].labels[add] == 0).all()


def test_flow_on_large_or_odd_slices():
    from promptseg.inference.slice_flow import IntensityScale, slice_flow

    rng = np.random.default_rng(0)
    base = rng.random((40, 40)).astype(np.float32)
    from skimage.transform import resize
    big = resize(base, (600, 520), order=1)                  # smooth texture, downsampled for the flow
    moved = np.roll(big, 6, axis=0)
    f = slice_flow(big, moved)
    assert f.shape == (2, 600, 520)
    assert abs(float(np.median(f[0, 50:-50, 50:-50])) + 6) < 1.0   # target(r) = source(r - 6)
    scale = IntensityScale(np.array([[[np.nan, 0.0], [10.0, 20.0]]]))
    assert np.isfinite(scale(np.array([[np.nan, 5.0]]))).all()
    with pytest.raises(ValueError, match="no finite"):
        IntensityScale(np.full((2, 2, 2), np.nan))
    with pytest.raises(ValueError, match="same shape"):
        slice_flow(base, base[:-1])
