"""The headless annotation workflow (workflow/): the project's Predictor, propose-and-store,
accept, and the one embedding cache a round and the Predictor share."""
import dataclasses

import numpy as np
import pytest

from promptseg.io import load_sample
from promptseg.model.checkpoint import save_checkpoint
from promptseg.model.segmenter import ModelConfig, PromptSegModel
from promptseg.project import Project
from promptseg.training.evaluate import dice
from promptseg.workflow.accept import accept
from promptseg.workflow.session import AnnotationSession


def _cache_files(project):
    return {p: p.stat().st_mtime_ns for p in project.embeddings_dir.rglob("*.npz")}


def test_an_image_a_round_embedded_is_read_back_by_the_predictor_not_embedded_again(tmp_path, capsys):
    """A round fills the project's embedding cache keyed by the project's image hash; the
    Predictor of the project's (new) model finds every image there: no encoder run, no new
    file, no file rewritten. A new image is embedded once and cached (the count works)."""
    from promptseg.training.round import run_round

    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    s = load_sample("nuclei")
    frozen = dataclasses.replace(ModelConfig.tiny(), train_backbone=False)   # rounds keep the encoder
    with Project.create(tmp_path / "p") as proj:
        for it in s.items:
            proj.add_image(it.image, name=it.name)
        for it in s.items[:2]:
            proj.save_label(it.name, it.mask, ["nucleus"], "gold")
        save_checkpoint(PromptSegModel(frozen), tmp_path / "v1")
        proj.register_model(tmp_path / "v1", config={})
    assert run_round(str(tmp_path / "p"), "cpu", max_steps=2) == 0
    capsys.readouterr()

    with Project.open(tmp_path / "p") as proj:
        assert proj.active_model().version == 2
        before = _cache_files(proj)
        assert len(before) == len(s.items)          # the round embedded labelled and unlabelled images
        session = AnnotationSession.for_project(proj)
        predictor = session.predictor("cpu")
        calls = []
        embed = predictor.model.embed
        predictor.model.embed = lambda tiles: calls.append(len(tiles)) or embed(tiles)
        for rec in proj.images():
            predictor.set_image(proj.read_image(rec))
            predictor.predict("nucleus")
        assert calls == [] and _cache_files(proj) == before

        predictor.set_image(np.ascontiguousarray(s.items[0].image[::-1]))      # not in the project
        assert calls and len(_cache_files(proj)) == len(before) + 1


def test_propose_stores_a_scored_proposal_and_accept_records_the_correction(tmp_path, nuclei):
    """Propose on a project image with the default model: the stored proposal finds the nuclei
    (Dice against the gold mask), with its uncertainty and expert disagreement for Next; a typed
    synonym maps onto the class. Accept stores the corrected labels with Dice against the
    proposal and the fraction of pixels edited; a label outside the classes stores nothing."""
    item = nuclei.items[1]
    with Project.create(tmp_path / "p") as proj:
        rec = proj.add_image(item.image, name="n1")
        proj.add_class("nucleus", synonyms=["nuclei"])
        session = AnnotationSession.for_project(proj)
        proposed = session.propose(proj.read_image(rec), ["nuclei"], tau=0.5, device="cpu")
        assert [m.name for m in proposed.mapped] == ["nucleus"]
        lab, errors = session.store("n1", proposed)
        assert errors == [] and lab.kind == "proposal" and lab.classes == ["nucleus"]
        stored, _ = proj.read_label(lab)
        gt = item.mask > 0
        assert dice(stored > 0, gt) > 0.8
        row = next(r for r in proj.image_status() if r["name"] == "n1")
        assert row["status"] == "proposed" and 0 < row["uncertainty"] < 1 and 0 <= row["disagreement"] <= 1

        with pytest.raises(ValueError, match="values 0..1"):
            accept(proj, item.image, "n1", stored, stored * 2, ["nucleus"], None)
        assert [r.kind for r in proj.labels()] == ["proposal"]

        final = gt.astype(np.int32)
        done = accept(proj, item.image, "n1", stored, final, ["nucleus"], None, seconds=3.0, stored_proposal=stored)
        assert done.image.id == rec.id and not done.proposal_stored
        assert [r.kind for r in proj.labels()] == ["proposal", "corrected"]
        assert done.label.dice_vs_proposal == pytest.approx(dice(stored > 0, gt))
        assert done.label.edited_fraction == pytest.approx(float((stored != final).mean()))
        assert done.label.seconds == 3.0
        assert next(r for r in proj.image_status() if r["name"] == "n1")["status"] == "corrected"
