"""One round at a time per project, through real `promptseg train` subprocesses."""
import json
import os
import signal
import sqlite3
import subprocess
import sys

from promptseg.project import Project
from promptseg.project.lock import RoundLock


def _train(project, *args):
    return subprocess.Popen([sys.executable, "-m", "promptseg.cli", "train", str(project), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _events(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_a_held_lock_refuses_a_round_naming_the_holder_and_bad_step_counts_are_refused(tiny_round_project):
    with Project.open(tiny_round_project) as p, RoundLock(p.root):
        proc = _train(tiny_round_project, "--max-steps", "5")
        out, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    last = _events(out)[-1]
    assert last["event"] == "error" and f"a round is already running (pid {os.getpid()}, started" in last["message"]
    assert "a round is already running" in err and "Traceback" not in err
    for bad in ("0", "-5"):
        proc = _train(tiny_round_project, "--max-steps", bad)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 2 and "must be greater than 0" in err
    with Project.open(tiny_round_project) as p:
        assert p.rounds() == [] and [m.version for m in p.models()] == [1]


def test_a_second_concurrent_round_is_refused_and_the_first_completes(tiny_round_project):
    first = _train(tiny_round_project, "--max-steps", "10")
    assert json.loads(first.stdout.readline())["event"] == "plan"   # the first holds the lock
    second = _train(tiny_round_project, "--max-steps", "10")
    out2, _ = second.communicate(timeout=300)
    assert first.poll() is None, "the first round ended before the second was refused"
    assert second.returncode != 0
    assert f"a round is already running (pid {first.pid}" in _events(out2)[-1]["message"]
    out1, err1 = first.communicate(timeout=600)
    assert first.returncode == 0, err1
    assert _events(out1)[-1]["event"] == "done"
    with Project.open(tiny_round_project) as p:
        assert [r.status for r in p.rounds()] == ["done"] and p.active_model().version == 2


def test_sigkill_mid_round_leaves_it_interrupted_without_orphans_and_resume_finishes_it(tiny_round_project):
    proc = _train(tiny_round_project, "--max-steps", "6", "--save-every", "5")
    for line in proc.stdout:
        if json.loads(line)["event"] == "checkpoint":   # the temporary model folder exists now
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    (tiny_round_project / "models" / ".tmp-7-0badc0de").mkdir()   # and one left by an older kill
    con = sqlite3.connect(tiny_round_project / "project.sqlite")
    assert con.execute("SELECT status FROM rounds").fetchall() == [("running",)]   # as the kill left it
    con.close()
    info = subprocess.run([sys.executable, "-m", "promptseg.cli", "info", str(tiny_round_project)],
                          capture_output=True, text=True, timeout=300)
    assert json.loads(info.stdout)["rounds_by_status"] == {"interrupted": 1}
    models = tiny_round_project / "models"
    assert not list(models.glob("tmp*")) and not list(models.glob(".tmp-*"))
    proc = _train(tiny_round_project, "--resume")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    events = _events(out)
    start = next(e for e in events if e["event"] == "start")
    assert start["resumed_from"] == 5 and events[-1]["event"] == "done"
    with Project.open(tiny_round_project) as p:
        assert [r.status for r in p.rounds()] == ["done"]
        assert p.active_model().version == events[-1]["model_version"]
