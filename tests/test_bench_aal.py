"""`promptseg bench aal` plumbing: Colin27 + AAL from mricron-data, tiny model, few slices."""
import json

import numpy as np
import pytest

from promptseg.bench import aal as ba
from test_bench_monuseg import one_thread, tiny_cfg  # noqa: F401  (autouse fixture)

pytestmark = pytest.mark.skipif(not (ba.MRICRON / "aal.nii.gz").is_file(),
                                reason="Colin27/AAL need the Debian package mricron-data (scripts/setup.sh)")


def test_volumes_merge_into_the_sample_classes():
    t1, labels, classes = ba.load_volumes()
    assert t1.shape == labels.shape and len(classes) == 14
    assert set(np.unique(labels)) == set(range(15))        # every coarse class occurs
    rows = ba.slices(t1, labels, "coronal", step=10)
    assert rows and all(r.mask.shape == r.image.shape for r in rows)
    assert ba.spread_indices(100, 5) == [16, 33, 50, 66, 82]


def test_bench_aal_plumbing(tmp_path):
    cfg = ba.AALConfig(out=str(tmp_path / "out"), steps=2, slice_step=25, labelled=0.05, cache=str(tmp_path / "cache"))
    res = ba.run_aal(cfg, model_cfg=tiny_cfg(), log=lambda s: None)
    on_disk = json.loads((tmp_path / "out" / "results.json").read_text())
    c = on_disk["config"]
    assert len(c["labelled_slices"]) == 2 and c["eval_slices"] == c["n_slices"] - 2
    assert [r["method"] for r in on_disk["results"]] == [
        "nearest_slice", "flow_slice", "supervised", "supervised+propagate", "supervised+flow",
        "promptseg", "promptseg+propagate", "promptseg+flow"]
    for r in res["results"]:
        assert 0 <= r["dice"] <= 1 and set(r["per_class"]) <= set(c["classes"])
    assert "**mean**" in (tmp_path / "out" / "results.md").read_text()
    assert (tmp_path / "out" / "aal_dice.png").stat().st_size > 1000


def test_floors_without_a_model_copy_or_carry_the_labelled_slices(tmp_path):
    assert [ba.nearest_seed(i, [2, 6]) for i in range(9)] == [2, 2, 2, 2, 2, 6, 6, 6, 6]
    cfg = ba.AALConfig(out=str(tmp_path / "out"), methods=["nearest_slice", "flow_slice"], slice_step=4,
                       labelled=0.1)
    res = ba.run_aal(cfg, log=lambda s: None)
    nearest, flow = res["results"]
    assert nearest["method"] == "nearest_slice" and 0.2 < nearest["dice"] < 1   # neighbouring slices overlap
    # carried along the anatomy, the labels fit the other slices better than copies do
    assert flow["method"] == "flow_slice" and flow["dice"] > nearest["dice"] + 0.02
    assert not (tmp_path / "out" / "embeddings").exists()                # no model, no encoder pass


def test_propagate_rows_per_mode(tmp_path):
    cfg = ba.AALConfig(out=str(tmp_path / "out"), methods=["supervised"], steps=1, slice_step=40,
                       cache=str(tmp_path / "cache"), propagate=["flow+model"])
    res = ba.run_aal(cfg, model_cfg=tiny_cfg(), log=lambda s: None)
    assert [r["method"] for r in res["results"]] == ["supervised", "supervised+flow"]
    with pytest.raises(ValueError, match="--propagate takes"):
        ba.run_aal(ba.AALConfig(out=str(tmp_path), propagate=["flow"]), log=lambda s: None)


def test_aal_trains_on_whole_slices_unless_told_otherwise(tmp_path, monkeypatch):
    seen = []
    real = ba.train_prompt_model
    monkeypatch.setattr(ba, "train_prompt_model", lambda *a, **k: seen.append(k["crop_px"]) or real(*a, **k))
    for crop in (0, 32):
        cfg = ba.AALConfig(out=str(tmp_path / f"out{crop}"), methods=["supervised"], steps=1, slice_step=40,
                           cache=str(tmp_path / "cache"), crop=crop)
        ba.run_aal(cfg, model_cfg=tiny_cfg(), log=lambda s: None)
    assert seen == [64, 32]                 # the tiny model's whole 64-px tile, then a 32-px crop


def test_unknown_or_unfit_methods_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown method"):
        ba.run_aal(ba.AALConfig(out=str(tmp_path), methods=["nearest"]), log=lambda s: None)
    with pytest.raises(ValueError, match="nearest_slice baseline"):
        ba.run_aal(ba.AALConfig(out=str(tmp_path), methods=["unet"]), log=lambda s: None)
