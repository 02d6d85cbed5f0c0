"""Every stored mask records its source (text, box, click, exemplar, painted): schema 3, its
migration from a version-2 project file, and the store's per-source report."""
import sqlite3

import numpy as np
import pytest

from promptseg.project import MaskSource, Project, ProjectError
from promptseg.project import schema


def _v2_project(root):
    """A project file as promptseg wrote it at schema 2: one image, a proposal and its correction."""
    for sub in ("images", "labels", "models", "embeddings", "exports"):
        (root / sub).mkdir(parents=True)
    db = root / "project.sqlite"
    conn = sqlite3.connect(db)
    for step in (0, 1):                          # the migrations as they stood at schema 2
        schema.MIGRATIONS[step](conn)
    conn.execute("PRAGMA user_version = 2")
    conn.execute("INSERT INTO images(name, path, sha256, shape, dtype, added, rgb)"
                 " VALUES ('a', 'images/a.tif', 'x', '[8, 8]', 'uint8', 0, 0)")
    conn.execute("INSERT INTO labels(image_id, version, path, kind, classes, prompt, created)"
                 " VALUES (1, 1, 'labels/a/1.tif', 'proposal', '[\"nucleus\", \"gland\"]', 'nucleus; gland', 0)")
    conn.execute("INSERT INTO labels(image_id, version, path, kind, classes, created)"
                 " VALUES (1, 2, 'labels/a/2.tif', 'corrected', '[\"nucleus\"]', 0)")
    conn.execute("INSERT INTO labels(image_id, version, path, kind, classes, created)"
                 " VALUES (1, 3, 'labels/a/3.tif', 'gold', '[\"nucleus\"]', 0)")
    conn.commit()
    conn.close()
    return db


def test_v2_project_migrates_to_v3_with_text_sources(tmp_path):
    db = _v2_project(tmp_path / "p")
    conn = sqlite3.connect(db)
    assert schema.get_version(conn) == 2
    assert not conn.execute("SELECT 1 FROM sqlite_master WHERE name='label_sources'").fetchall()
    conn.close()
    with Project.open(tmp_path / "p") as p:
        assert schema.get_version(p._db) == schema.SCHEMA_VERSION == 3
        by_label = {lab.version: p.label_sources(lab) for lab in p.labels()}
        # proposals and corrected labels started from the text model; their pixel counts were never kept
        assert [(s.class_name, s.source, s.pixels) for s in by_label[1]] == [("nucleus", "text", None),
                                                                             ("gland", "text", None)]
        assert [(s.class_name, s.source) for s in by_label[2]] == [("nucleus", "text")]
        assert by_label[3] == []                 # gold was imported: its source is not known
        assert p.source_summary()["text"]["labels"] == 1


def test_save_label_stores_sources_and_summary_groups_by_them(tmp_path):
    with Project.create(tmp_path / "p") as p:
        lab = np.zeros((8, 8), np.uint8)
        lab[:2] = 1
        lab[4:6, :3] = 2
        p.add_image(np.zeros((8, 8), np.uint8), name="a")
        prop = p.save_label("a", lab, ["nucleus", "gland"], "proposal")
        assert [(s.class_name, s.source, s.pixels) for s in p.label_sources(prop)] == [("nucleus", "text", 16),
                                                                                      ("gland", "text", 6)]
        made = [MaskSource("nucleus", "box", 10, 2, 0.9), MaskSource("Nucleus", "painted", 6),
                MaskSource("gland", "exemplar", 6, 1)]
        cor = p.save_label("a", lab, ["nucleus", "gland"], "corrected", dice_vs_proposal=0.5, seconds=12.0,
                           sources=made)
        got = p.label_sources(cor)
        assert [(s.class_name, s.source, s.pixels, s.objects) for s in got] == [
            ("nucleus", "box", 10, 2), ("nucleus", "painted", 6, 0), ("gland", "exemplar", 6, 1)]
        assert got[0].score == pytest.approx(0.9)
        summary = p.source_summary()
        assert summary["box"] == {"labels": 1, "pixels": 10, "objects": 2, "dice_vs_proposal": 0.5, "seconds": 12.0}
        assert set(summary) == {"box", "painted", "exemplar"}
        assert set(p.source_summary(("proposal",))) == {"text"}

        # a bad source is refused before anything is written
        n = len(p.labels())
        for bad, msg in (([MaskSource("nucleus", "magic", 3)], "unknown mask source"),
                         ([MaskSource("spleen", "box", 3)], "does not hold"),
                         ([MaskSource("nucleus", "box", 3), MaskSource("nucleus", "box", 1)], "given twice")):
            with pytest.raises(ProjectError, match=msg):
                p.save_label("a", lab, ["nucleus", "gland"], "corrected", sources=bad)
        assert len(p.labels()) == n and len(p.label_sources()) == 5


def test_accept_counts_pixels_per_source(tmp_path):
    from promptseg.workflow.accept import accept
    from promptseg.workflow.objects import MaskObject, instance_map, paint_object

    proposal = np.zeros((10, 10), np.int32)
    proposal[:3, :3] = 1                                     # the text model's nucleus
    box = np.zeros((10, 10), bool)
    box[5:8, 5:8] = True
    ex = np.zeros((10, 10), bool)
    ex[0:2, 6:9] = True
    ex[0, 2] = True                                          # overlaps the proposal: not overwritten
    labels, classes, n = paint_object(proposal, ["nucleus"], MaskObject(box, "gland", "box", 0.8))
    assert classes == ["nucleus", "gland"] and n == 9 and (labels[box] == 2).all()
    labels, classes, n = paint_object(labels, classes, MaskObject(ex, "Gland", "exemplar"), only_background=True)
    assert n == 6 and labels[0, 2] == 1
    objects = [MaskObject(box, "gland", "box", 0.8), MaskObject(ex, "gland", "exemplar", None)]
    assert np.unique(instance_map(labels, classes, objects)).tolist() == [0, 1, 2]
    labels[9, 9] = 1                                         # a brush stroke
    with Project.create(tmp_path / "p") as p:
        done = accept(p, np.zeros((10, 10), np.uint8), "a", proposal, labels, classes, None, objects=objects)
        got = {(s.class_name, s.source): (s.pixels, s.objects) for s in p.label_sources(done.label)}
        assert got == {("nucleus", "text"): (9, 0), ("nucleus", "painted"): (1, 0),
                       ("gland", "box"): (9, 1), ("gland", "exemplar"): (6, 1)}
        assert {c.name for c in p.classes()} >= {"nucleus", "gland"}   # the new class joined the project
        # a label that is not a correction of the proposal stores nothing
        with pytest.raises(ValueError):
            accept(p, np.zeros((10, 10), np.uint8), "a", proposal, labels + 5, classes, None, objects=objects)
        assert len(p.labels()) == 2
    with pytest.raises(ValueError, match="source"):
        MaskObject(box, "gland", "text")
