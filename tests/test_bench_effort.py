"""`promptseg bench effort` plumbing on a tiny MoNuSeg-format set with the tiny test model."""
import json

import pytest

from promptseg.bench.effort import EFFORT_SCHEDULE, EffortConfig, annotation_order, run_effort
from promptseg.workflow.schedule import AnnotatorSchedule
from test_bench_monuseg import make_monuseg_like, one_thread, tiny_cfg  # noqa: F401  (fixture)


def test_effort_rounds_and_outputs(tmp_path, nuclei):
    data = make_monuseg_like(tmp_path / "data", nuclei)
    plan = AnnotatorSchedule(rounds=4, per_round=2, initial=2, steps_first=3, steps_per_round=2)
    cfg = EffortConfig(data=str(data), out=str(tmp_path / "out"), schedule=plan, method="supervised",
                       cache=str(tmp_path / "cache"))
    res = run_effort(cfg, model_cfg=tiny_cfg(), log=lambda s: None)
    on_disk = json.loads((tmp_path / "out" / "results.json").read_text())
    rounds = on_disk["results"]
    assert [r["round"] for r in rounds] == [0, 1, 2, 3, 4] and rounds == json.loads(json.dumps(res["results"]))
    assert [r["labelled"] for r in rounds] == [2, 4, 6, 8, 10]
    assert rounds[0]["edited_fraction"] is None
    order = annotation_order([f"img{k:02d}" for k in range(12)], 0)
    proposed = [p["image"] for r in rounds for p in r["proposals"]]
    assert proposed == order[2:10]          # each image proposed once, in the annotator's order
    evals = set(on_disk["config"]["eval_images"])
    assert evals == {f"img{k:02d}" for k in range(12, 16)} and not evals & set(proposed + order[:2])
    for r in rounds[1:]:
        assert 0 <= r["edited_fraction"] <= 1 and 0 <= r["dice_proposal_vs_final"] <= 1
    assert (tmp_path / "out" / "effort_curve.png").stat().st_size > 1000
    assert "edited pixels" in (tmp_path / "out" / "results.md").read_text()


def test_effort_rejects_too_many_rounds(tmp_path, nuclei):
    data = make_monuseg_like(tmp_path / "data", nuclei)
    with pytest.raises(ValueError, match="training rows"):
        run_effort(EffortConfig(data=str(data), out=str(tmp_path / "o"), method="supervised",
                                schedule=EFFORT_SCHEDULE.overridden(rounds=6, per_round=2)),
                   model_cfg=tiny_cfg(), log=lambda s: None)
