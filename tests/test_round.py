"""A training round through the real subprocess and its JSON-lines protocol."""
import json
import os
import signal
import sqlite3
import subprocess
import sys

import pytest

from promptseg.io import load_sample
from promptseg.model.checkpoint import save_checkpoint
from promptseg.model.segmenter import ModelConfig, PromptSegModel
from promptseg.project import Project


@pytest.fixture
def project(tmp_path):
    s = load_sample("nuclei")
    with Project.create(tmp_path / "p") as p:
        for it in s.items:
            p.add_image(it.image, name=it.name)
        for it in s.items[:3]:
            p.save_label(it.name, it.mask, ["nucleus"], "gold")
        save_checkpoint(PromptSegModel(ModelConfig.tiny()), tmp_path / "tiny")
        p.register_model(tmp_path / "tiny", config={"seed": "tiny"})
    return tmp_path / "p"


def _start(project, *args):
    return subprocess.Popen([sys.executable, "-m", "promptseg.cli", "train", str(project), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_round_emits_json_lines_and_registers_a_new_active_model(project):
    proc = _start(project, "--max-steps", "10")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "embed" and "start" in kinds and kinds[-1] == "done"
    steps = [e for e in events if e["event"] == "step"]
    assert [s["step"] for s in steps] == [5, 10] and all("total" in s and "it_s" in s for s in steps)
    assert events[-1]["model_version"] == 2
    with Project.open(project) as p:
        assert p.active_model().version == 2 and p.active_model().parent == 1
        assert p.rounds()[-1].status == "done"


def test_sigkill_mid_round_keeps_db_consistent_and_old_model_active(project):
    proc = _start(project, "--max-steps", "100000")
    for line in proc.stdout:
        if json.loads(line)["event"] == "step":
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    con = sqlite3.connect(project / "project.sqlite")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    with Project.open(project) as p:
        assert p.active_model().version == 1 and len(p.models()) == 1


def test_sigterm_cancels_cleanly(project):
    proc = _start(project, "--max-steps", "100000")
    for line in proc.stdout:
        if json.loads(line)["event"] == "step":
            break
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert json.loads(out.splitlines()[-1])["event"] == "cancelled"
    with Project.open(project) as p:
        assert p.active_model().version == 1 and p.rounds()[-1].status == "cancelled"


def test_round_without_labels_reports_an_error_event(tmp_path):
    Project.create(tmp_path / "empty").close()
    proc = _start(tmp_path / "empty", "--max-steps", "2")
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 1
    last = json.loads(out.splitlines()[-1])
    assert last["event"] == "error" and "no accepted labels" in last["message"]
