"""Stain transfer (bench/stain.py): recoloured images take the donor's colour statistics."""
import numpy as np
import pytest

from promptseg.bench.stain import donor_assignment, stain_stats, transfer_stain


def he_like(seed: int, tint: tuple[float, float, float]) -> np.ndarray:
    """A 64² image of dark blobs (nuclei) on a tinted background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64]
    img = np.ones((64, 64, 3)) * np.asarray(tint)
    for cy, cx in rng.integers(8, 56, size=(6, 2)):
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < 25] *= 0.45
    return (np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1) * 255).astype(np.uint8)


def test_a_recoloured_image_takes_the_donors_colour_and_keeps_its_structure():
    pink, purple = he_like(0, (0.85, 0.55, 0.75)), he_like(1, (0.55, 0.45, 0.8))
    out = transfer_stain(pink, stain_stats(purple))
    assert out.shape == pink.shape and out.dtype == np.uint8
    got, want, before = stain_stats(out), stain_stats(purple), stain_stats(pink)
    assert np.allclose(got.mean, want.mean, atol=2.0)               # L*a*b* means within 2 units
    assert np.abs(np.subtract(before.mean, want.mean)).max() > 10    # they were far apart
    # the nuclei stay where they were: darkness ranks the same pixels
    assert np.corrcoef(pink.mean(-1).ravel(), out.mean(-1).ravel())[0, 1] > 0.95


def test_the_stats_ignore_blank_glass_and_odd_inputs_get_clear_errors():
    img = he_like(0, (0.85, 0.55, 0.75))
    padded = np.concatenate([img, np.full((64, 64, 3), 250, np.uint8)], 1)   # half the image is white glass
    assert np.allclose(stain_stats(padded).mean, stain_stats(img).mean, atol=1.5)
    rgba = np.concatenate([img, np.full((64, 64, 1), 255, np.uint8)], -1)
    assert np.array_equal(transfer_stain(rgba, stain_stats(img)), transfer_stain(img, stain_stats(img)))
    with pytest.raises(ValueError, match="RGB"):
        stain_stats(img[..., 0])
    bad = img.astype(np.float32)
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        stain_stats(bad)
    sixteen = img.astype(np.uint16) * 257   # 16-bit RGB: 65535 is white, not 255
    assert np.allclose(stain_stats(sixteen).mean, stain_stats(img).mean, atol=1.0)


def test_donors_are_spread_evenly_and_the_draw_is_fixed():
    a = donor_assignment(["r1", "r2", "r3"], ["d1", "d2", "d3", "d4", "d5", "d6"], 2, seed=0)
    used = [d for ds in a.values() for d in ds]
    assert sorted(used) == ["d1", "d2", "d3", "d4", "d5", "d6"]   # each donor once before any repeats
    assert a == donor_assignment(["r1", "r2", "r3"], ["d1", "d2", "d3", "d4", "d5", "d6"], 2, seed=0)
    assert donor_assignment(["r1"], [], 0) == {"r1": []}
    few = donor_assignment(["r1", "r2"], ["d1", "d2"], 3)   # never the same stain twice for one image
    assert all(sorted(ds) == ["d1", "d2"] for ds in few.values())
    with pytest.raises(ValueError, match="unlabelled"):
        donor_assignment(["r1"], [], 1)
