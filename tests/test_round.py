"""A training round through the real subprocess and its JSON-lines protocol."""
import json
import os
import signal
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
import torch

from promptseg.io import load_sample
from promptseg.model.segmenter import ModelConfig, PromptSegModel
from promptseg.project import Project


@pytest.fixture
def project(tiny_round_project):
    return tiny_round_project


def _start(project, *args):
    return subprocess.Popen([sys.executable, "-m", "promptseg.cli", "train", str(project), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_round_emits_json_lines_and_registers_a_new_active_model(project):
    proc = _start(project, "--max-steps", "10")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "plan" and "start" in kinds and kinds[-1] == "done"
    steps = [e for e in events if e["event"] == "step"]
    assert [s["step"] for s in steps] == [5, 10] and all("total" in s and "it_s" in s for s in steps)
    assert events[-1]["model_version"] == 2
    start = next(e for e in events if e["event"] == "start")
    assert start["route"] == events[-1]["metrics"]["route"] == "frozen encoder + decoder"
    with Project.open(project) as p:
        assert p.active_model().version == 2 and p.active_model().parent == 1
        assert p.rounds()[-1].status == "done"
        # the round and the model version it made both record which route trained it
        assert p.rounds()[-1].config["route"] == p.rounds()[-1].metrics["route"] == "frozen encoder + decoder"
        assert p.active_model().config["route"] == p.active_model().metrics["route"] == "frozen encoder + decoder"


def test_embed_events_count_each_group_and_the_whole_round(project):
    """The round says which images it embeds (3 accepted labels, the rest unlabelled) and how
    far it is through all of them, so a progress bar can move during embedding."""
    with Project.open(project) as p:
        n_images = len(p.images())
    proc = _start(project, "--max-steps", "1")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    plan = events[0]
    assert plan["event"] == "plan" and plan["steps"] == 1
    assert plan["embed"] == {"labelled": 3, "held-out": 0, "unlabelled": n_images - 3}
    assert plan["to_embed"] == n_images
    embeds = [e for e in events if e["event"] == "embed"]
    assert [(e["group"], e["done"], e["total"]) for e in embeds] == (
        [("labelled", i, 3) for i in range(4)] + [("unlabelled", i, n_images - 3) for i in range(n_images - 2)])
    assert [e["embedded"] for e in embeds] == list(range(4)) + list(range(3, n_images + 1))
    assert all(e["to_embed"] == n_images for e in embeds) and embeds[-1]["image"] is not None
    start = next(e for e in events if e["event"] == "start")
    assert start["steps"] == 1 and kinds_before(events, "start") >= {"plan", "embed"}


def kinds_before(events, kind):
    return {e["event"] for e in events[:[e["event"] for e in events].index(kind)]}


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


def test_views_multiply_the_training_labels_but_never_the_validation_labels(project):
    s = load_sample("nuclei")
    with Project.open(project) as p:   # 5 labels: the round holds one out for validation
        p.save_label(s.items[3].name, s.items[3].mask, ["nucleus"], "gold")
        p.add_image(s.items[0].image[::-1].copy(), name="flipped")
        p.save_label("flipped", s.items[0].mask[::-1].copy(), ["nucleus"], "gold")
    proc = _start(project, "--max-steps", "5", "--views", "4")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    start = next(json.loads(line) for line in out.splitlines() if json.loads(line)["event"] == "start")
    assert (start["labelled"], start["views"], start["train_items"], start["val"]) == (4, 4, 4 * 4, 1)
    # embedded: 4 training labels x 4 views, and the validation image once (never turned)
    assert len(list((project / "embeddings").rglob("*.npz"))) == 4 * 4 + 1
    with Project.open(project) as p:
        assert p.rounds()[-1].config["views"] == 4
    bad = _start(project, "--views", "9")
    assert bad.wait(timeout=120) != 0 and "--views" in bad.stderr.read()


def test_a_view_turns_the_labels_with_the_image(tmp_path, nuclei):
    from promptseg.training.dataset import items_from_sources, labelled_sources
    from promptseg.inference.embeddings import EmbeddingCache

    with Project.create(tmp_path / "p") as p:
        for it in nuclei.items:
            p.add_image(it.image, name=it.name)
            p.save_label(it.name, it.mask, ["nucleus"], "gold")
        sources, classes = labelled_sources(p)
    cache = EmbeddingCache(tmp_path / "emb", PromptSegModel(ModelConfig.tiny()))
    items = items_from_sources(sources[:1], cache, classes, views=8)
    base = sources[0]
    assert [it.name for it in items][:2] == [base.name, base.name + "@r90"] and len(items) == 8
    # a turned view's labels are the turned label map (its first tile here), not the original's
    t = cache.model.tile
    turned = torch.from_numpy(np.ascontiguousarray(base.labels[::-1, ::-1])).long()
    assert torch.equal(items[2].labels[0], turned[:t, :t]) and not torch.equal(items[0].labels[0], turned[:t, :t])
    with pytest.raises(ValueError, match="between 1 and 8"):
        items_from_sources(sources[:1], cache, classes, views=0)


def test_interrupted_round_resumes_and_finishes(project):
    proc = _start(project, "--max-steps", "12", "--save-every", "4", "--views", "2")
    for line in proc.stdout:
        if json.loads(line)["event"] == "step":   # step 5: a state was saved at step 4
            break
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    cancelled = json.loads(out.splitlines()[-1])
    assert cancelled["event"] == "cancelled" and cancelled["resumable"] and 5 <= cancelled["steps"] < 12
    proc = _start(project, "--resume")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    start = next(e for e in events if e["event"] == "start")
    assert start["resumed_from"] == cancelled["steps"] and start["round"] == cancelled["round"]
    assert (start["views"], start["train_items"]) == (2, 3 * 2)   # the views it started with
    assert [e["step"] for e in events if e["event"] == "step"][-1] == 12
    assert events[-1]["event"] == "done" and events[-1]["round"] == cancelled["round"]
    with Project.open(project) as p:
        assert p.active_model().version == 2 and p.rounds()[-1].status == "done"
        assert not (project / "rounds" / str(cancelled["round"])).exists()   # the state is cleaned up


def test_resume_without_an_interrupted_round_is_a_clear_error(project):
    out, _ = _start(project, "--resume").communicate(timeout=600)
    last = json.loads(out.splitlines()[-1])
    assert last["event"] == "error" and "no interrupted round" in last["message"]


def test_two_process_gloo_ddp_round_ends_with_identical_weights_on_both_ranks(project):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29531", "-m", "promptseg.training.round", str(project),
                           "--max-steps", "4"], capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    start = next(e for e in events if e["event"] == "start")
    assert start["world_size"] == 2
    done = events[-1]
    assert done["event"] == "done" and len(done["rank_weights_sha256"]) == 2
    assert done["rank_weights_sha256"][0] == done["rank_weights_sha256"][1]
    with Project.open(project) as p:
        assert p.active_model().version == 2 and len(p.rounds()) == 1
