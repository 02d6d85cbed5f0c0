"""The demo loop's plumbing on a tiny model: project rows, model versions, report.json."""
import json

import pytest

from promptseg.workflow.schedule import AnnotatorSchedule
from promptseg.workflow.demo import DemoConfig, format_table, run_demo, spread_order
from promptseg.model.segmenter import ModelConfig
from promptseg.project import Project


def test_spread_order_covers_the_volume_early():
    order = spread_order(list(range(16)))
    assert sorted(order) == list(range(16))
    assert order[:2] == [8, 0] and set(order[:4]) == {0, 4, 8, 12}


@pytest.mark.slow
def test_demo_runs_rounds_and_records_everything(tmp_path):
    cfg = DemoConfig(sample="brain", schedule=AnnotatorSchedule(rounds=2, per_round=2, initial=2, steps_first=15,
                                                        steps_per_round=10))
    report = run_demo(tmp_path, cfg, model_cfg=ModelConfig.tiny(), log=lambda s: None)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["rounds"] == report["rounds"]
    assert [r["labelled"] for r in saved["rounds"]] == [2, 4]
    assert all(0.0 <= r["dice"] <= 1.0 for r in saved["rounds"])
    assert saved["rounds"][1]["edited_fraction"] is not None
    assert "| 1 | 4 |" in format_table(saved)
    with Project.open(tmp_path / "project") as p:
        assert [m.version for m in p.models()] == [1, 2] and p.active_model().version == 2
        corrected = p.labels(kinds=("corrected",))
        assert len(corrected) == 2
        assert all(r.edited_fraction is not None and r.model_version == 1 for r in corrected)
        assert [r.status for r in p.rounds()] == ["done", "done"]
