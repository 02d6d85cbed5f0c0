"""Tests for the project store using real SQLite files and real TIFFs."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import tifffile

from promptseg.project import (
    SCHEMA_VERSION,
    Project,
    ProjectError,
    atomic_path,
    atomic_replace_dir,
    atomic_write_json,
)

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture
def proj(tmp_path: Path) -> Iterator[Project]:
    p = Project.create(tmp_path / "proj", name="demo")
    yield p
    p.close()


def _img(seed: int = 0, shape=(16, 20)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4000, size=shape, dtype=np.uint16)


def test_create_makes_layout_and_open_round_trips(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    with Project.create(root, name="demo") as p:
        assert p.name == "demo" and p.root == root.absolute()
        rec = p.add_image(_img(), name="ct1", spacing=(1.0, 0.5))
        p.add_class("liver", synonyms=["hepar"])
        p.save_label("ct1", np.zeros((16, 20), np.uint8), ["liver"], "gold")
    for sub in ("images", "labels", "models", "embeddings", "exports"):
        assert (root / sub).is_dir()
    db = sqlite3.connect(root / "project.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()

    with Project.open(root) as p2:
        assert p2.name == "demo"
        assert p2.images() == [rec]
        assert p2.image(rec.id).spacing == (1.0, 0.5)
        np.testing.assert_array_equal(p2.read_image("ct1"), _img())
        assert [c.name for c in p2.classes()] == ["liver"]
        assert len(p2.labels("ct1")) == 1


def test_create_refuses_existing_and_open_refuses_missing(tmp_path: Path) -> None:
    Project.create(tmp_path / "p").close()
    with pytest.raises(ProjectError, match="already holds"):
        Project.create(tmp_path / "p")
    with pytest.raises(ProjectError, match="does not exist"):
        Project.open(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ProjectError, match="not a promptseg project"):
        Project.open(tmp_path / "empty")
    with Project.open_or_create(tmp_path / "new") as p:
        p.add_image(_img(), name="x")
    with Project.open_or_create(tmp_path / "new") as p:
        assert [i.name for i in p.images()] == ["x"]


def test_add_image_idempotent_and_name_conflict(proj: Project) -> None:
    a = proj.add_image(_img(1), name="scan")
    assert proj.add_image(_img(1), name="scan") == a
    assert len(proj.images()) == 1
    with pytest.raises(ProjectError, match="already exists with different content"):
        proj.add_image(_img(2), name="scan")
    # same content, same default name -> same record
    assert proj.add_image(_img(3)) == proj.add_image(_img(3))
    for bad in ("", "  ", "a/b", "..", "a\\b"):
        with pytest.raises(ProjectError, match="invalid image name"):
            proj.add_image(_img(4), name=bad)
    with pytest.raises(ProjectError, match="no image named 'missing'"):
        proj.image("missing")


def test_add_image_from_files(proj: Project, tmp_path: Path) -> None:
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 255, size=(12, 10, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    tifffile.imwrite(tmp_path / "vol.tiff", _img(5, (3, 8, 9)), photometric="minisblack")
    png = proj.add_image(tmp_path / "photo.png")
    vol = proj.add_image(str(tmp_path / "vol.tiff"))
    assert (png.name, png.shape, png.spatial_shape) == ("photo", (12, 10, 3), (12, 10))
    assert vol.name == "vol" and vol.path.suffix == ".tif" and vol.path.parent == proj.root / "images"
    np.testing.assert_array_equal(proj.read_image(png), rgb)
    np.testing.assert_array_equal(proj.read_image(vol), _img(5, (3, 8, 9)))
    # A 3-slice volume must not be mistaken for RGB: its labels are 3-D.
    proj.save_label(vol, np.zeros((3, 8, 9), np.uint8), ["bone"], "gold")
    # An RGB image takes a 2-D label of its spatial shape.
    proj.save_label(png, np.ones((12, 10), np.uint8), ["sky"], "proposal")


def test_label_versions_increment_and_old_files_untouched(proj: Project) -> None:
    proj.add_image(_img(), name="ct")
    first = np.zeros((16, 20), np.uint8)
    first[2:5, 2:5] = 1
    l1 = proj.save_label("ct", first, ["liver"], "proposal", model_version=None, prompt="liver")
    before = l1.path.read_bytes()
    second = first.copy()
    second[8:10, 8:10] = 2
    l2 = proj.save_label("ct", second, ["liver", "Kidney"], "corrected", dice_vs_proposal=0.9,
                         edited_fraction=0.02, seconds=12.5)
    assert (l1.version, l2.version) == (1, 2)
    assert l1.path != l2.path and l1.path.read_bytes() == before
    arr, names = proj.read_label(l2)
    np.testing.assert_array_equal(arr, second)
    assert names == ["liver", "Kidney"] and arr.dtype == np.uint8
    assert proj.latest_label("ct") == l2
    assert proj.latest_label("ct", kinds=("proposal",)) == l1
    assert proj.latest_label("ct", kinds=("gold",)) is None
    assert [l.version for l in proj.labels(kinds=("corrected", "gold"))] == [2]
    assert l2.prompt is None and l1.prompt == "liver" and l2.seconds == 12.5
    assert {c.name for c in proj.classes()} == {"liver", "Kidney"}


def test_label_uses_uint16_for_many_classes(proj: Project) -> None:
    proj.add_image(_img(), name="ct")
    names = [f"c{i}" for i in range(300)]
    lab = np.full((16, 20), 300, np.int64)
    arr, _ = proj.read_label(proj.save_label("ct", lab, names, "gold"))
    assert arr.dtype == np.uint16 and int(arr.max()) == 300


def test_label_validation_errors(proj: Project) -> None:
    proj.add_image(_img(), name="ct")
    ok = np.zeros((16, 20), np.uint8)
    with pytest.raises(ProjectError, match="invalid label kind 'final'"):
        proj.save_label("ct", ok, ["a"], "final")
    with pytest.raises(ProjectError, match=r"label shape \(16, 21\) does not match"):
        proj.save_label("ct", np.zeros((16, 21), np.uint8), ["a"], "gold")
    with pytest.raises(ProjectError, match=r"values must be in 0\.\.1.*found values 0\.\.2"):
        proj.save_label("ct", ok + 2 * (np.arange(20) == 3), ["a"], "gold")
    with pytest.raises(ProjectError, match="found values -1"):
        proj.save_label("ct", ok.astype(np.int16) - 1, ["a"], "gold")
    with pytest.raises(ProjectError, match="integer dtype"):
        proj.save_label("ct", ok.astype(np.float32), ["a"], "gold")
    with pytest.raises(ProjectError, match="no image named"):
        proj.save_label("other", ok, ["a"], "gold")
    assert proj.labels() == [] and not any((proj.root / "labels").rglob("*.tif"))
    # bool masks are accepted as uint8
    rec = proj.save_label("ct", ok.astype(bool), ["a"], "gold")
    assert proj.read_label(rec)[0].dtype == np.uint8


def test_open_rejects_foreign_sqlite(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    db = sqlite3.connect(tmp_path / "p" / "project.sqlite")
    db.execute("CREATE TABLE other(x)")
    db.commit()
    db.close()
    with pytest.raises(ProjectError, match="not a promptseg project database"):
        Project.open(tmp_path / "p")


def test_labelled_and_unlabelled_images(proj: Project) -> None:
    for i in range(3):
        proj.add_image(_img(i), name=f"im{i}")
    proj.save_label("im0", np.zeros((16, 20), np.uint8), ["a"], "gold")
    proj.save_label("im1", np.zeros((16, 20), np.uint8), ["a"], "proposal")
    assert [i.name for i in proj.labelled_images()] == ["im0"]
    assert [i.name for i in proj.unlabelled_images()] == ["im1", "im2"]
    assert [i.name for i in proj.labelled_images(kinds=("proposal",))] == ["im1"]
    s = proj.summary()
    assert (s["images"], s["labelled"], s["classes"]) == (3, 1, 1)
    assert s["labels_by_kind"] == {"proposal": 1, "corrected": 0, "gold": 1}


def test_classes_get_or_create_and_synonyms(proj: Project) -> None:
    liver = proj.add_class(" Liver ", synonyms=["hepar"])
    assert liver.name == "Liver" and liver.color.startswith("#") and len(liver.color) == 7
    assert proj.add_class("liver").id == liver.id
    kidney = proj.add_class("kidney")
    assert kidney.color != liver.color
    assert proj.add_class("spleen", color="#00FF00").color == "#00ff00"
    proj.add_synonym("kidney", "Renal")
    assert proj.class_by_name("HEPAR").id == liver.id
    assert proj.class_by_name("renal").name == "kidney"
    assert proj.class_by_name("heart") is None
    with pytest.raises(ProjectError, match="already names class"):
        proj.add_synonym("kidney", "hepar")
    with pytest.raises(ProjectError, match="must not be empty"):
        proj.add_class("   ")
    with pytest.raises(ProjectError, match="invalid colour"):
        proj.add_class("lung", color="red")
    assert [c.name for c in proj.classes()] == ["Liver", "kidney", "spleen"]


def test_class_embeddings_round_trip(proj: Project) -> None:
    v = np.random.default_rng(0).standard_normal(384)
    proj.set_class_embedding("liver", v, "minilm")
    proj.set_class_embedding("kidney", v[:10], "other")
    got = proj.class_embeddings("minilm")
    assert list(got) == ["liver"] and got["liver"].dtype == np.float32
    np.testing.assert_array_equal(got["liver"], v.astype(np.float32))
    assert set(proj.class_embeddings()) == {"liver", "kidney"}


def _model_src(tmp_path: Path, tag: str) -> Path:
    d = tmp_path / f"src-{tag}"
    d.mkdir()
    (d / "model.safetensors").write_bytes(tag.encode() * 100)
    atomic_write_json(d / "config.json", {"tag": tag})
    return d


def test_register_model_activation_and_rollback(proj: Project, tmp_path: Path) -> None:
    assert proj.active_model() is None
    m1 = proj.register_model(_model_src(tmp_path, "a"), config={"lr": 1e-4}, metrics={"dice": 0.7})
    m2 = proj.register_model(_model_src(tmp_path, "b"), config={"lr": 1e-5}, parent=1)
    assert (m1.version, m2.version, m2.parent) == (1, 2, 1)
    assert proj.active_model().version == 2
    assert [m.active for m in proj.models()] == [False, True]
    assert (proj.model_dir(2) / "config.json").is_file() and proj.model_dir(2) == proj.root / "models/2"
    assert m1.sha256 != m2.sha256 and len(m1.sha256) == 64
    assert proj.models()[0].metrics == {"dice": 0.7}
    proj.set_active_model(1)
    assert [m.active for m in proj.models()] == [True, False]
    with pytest.raises(ProjectError, match="no model version 9"):
        proj.set_active_model(9)
    assert proj.active_model().version == 1
    m3 = proj.register_model(_model_src(tmp_path, "c"), config={}, activate=False)
    assert m3.version == 3 and proj.active_model().version == 1
    assert not [p for p in (proj.root / "models").iterdir() if p.name.startswith(".tmp")]
    with pytest.raises(ProjectError, match="parent model version 7"):
        proj.register_model(_model_src(tmp_path, "d"), config={}, parent=7)


def test_rounds_record_status_and_metrics(proj: Project) -> None:
    rid = proj.start_round({"epochs": 3})
    assert proj.rounds()[0].status == "running"
    proj.finish_round(rid, "failed", {"error": "oom"})
    r = proj.rounds()[0]
    assert (r.status, r.metrics, r.config) == ("failed", {"error": "oom"}, {"epochs": 3})
    assert r.finished is not None
    with pytest.raises(ProjectError, match="invalid final round status"):
        proj.finish_round(rid, "bogus")


def test_newer_schema_gives_clear_error(tmp_path: Path) -> None:
    Project.create(tmp_path / "p").close()
    db = sqlite3.connect(tmp_path / "p" / "project.sqlite")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(ProjectError, match=rf"newer promptseg \(schema {SCHEMA_VERSION + 1} > "):
        Project.open(tmp_path / "p")


def test_corrupt_database_gives_project_error(tmp_path: Path) -> None:
    Project.create(tmp_path / "p").close()
    for suffix in ("-wal", "-shm"):
        Path(str(tmp_path / "p" / "project.sqlite") + suffix).unlink(missing_ok=True)
    (tmp_path / "p" / "project.sqlite").write_bytes(os.urandom(4096))
    with pytest.raises(ProjectError, match="is not a readable promptseg project"):
        Project.open(tmp_path / "p")


def test_atomic_path_cleans_up_on_error_and_replace_dir(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.bin"]
    (tmp_path / "d1").mkdir()
    (tmp_path / "d1" / "x").write_text("1")
    atomic_replace_dir(tmp_path / "d1", tmp_path / "d2")
    assert (tmp_path / "d2" / "x").read_text() == "1"
    (tmp_path / "d3").mkdir()
    with pytest.raises(FileExistsError):
        atomic_replace_dir(tmp_path / "d3", tmp_path / "d2")


def test_sigkill_mid_write_leaves_old_file_and_healthy_db(proj: Project) -> None:
    proj.add_image(_img(), name="ct")
    old = proj.save_label("ct", np.zeros((16, 20), np.uint8), ["a"], "gold")
    old_bytes = old.path.read_bytes()
    new_target = old.path.parent / "2.tif"
    marker = proj.root / "ready"
    child = textwrap.dedent(f"""
        import sys, time, numpy as np, tifffile
        sys.path.insert(0, {SRC!r})
        from promptseg.project import Project, atomic_path
        p = Project.open({str(proj.root)!r})
        p.add_class("b")  # a committed write from the doomed process
        for target in ({str(old.path)!r}, {str(new_target)!r}):
            with atomic_path(target) as tmp:
                tifffile.imwrite(tmp, np.ones((16, 20), np.uint8), compression="zlib")
                with p._db:  # an open write transaction at the moment of death
                    p._db.execute("INSERT INTO meta(key, value) VALUES ('doomed', 'x')")
                    open({str(marker)!r}, "w").close()
                    time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", child])
    deadline = time.time() + 30
    while not marker.exists():
        assert proc.poll() is None, "child exited early"
        assert time.time() < deadline, "child never reached the write"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)

    assert old.path.read_bytes() == old_bytes
    assert not new_target.exists()
    with Project.open(proj.root) as p2:
        assert p2._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert p2._db.execute("SELECT count(*) FROM meta WHERE key='doomed'").fetchone()[0] == 0
        assert p2.class_by_name("b") is not None
        arr, _ = p2.read_label(p2.latest_label("ct"))
        assert arr.max() == 0
        # A leftover temp file does not block or confuse the next save.
        nxt = p2.save_label("ct", np.ones((16, 20), np.uint8), ["a"], "corrected")
        assert nxt.version == 2


def test_image_status_and_uncertainty(proj: Project) -> None:
    for i, name in enumerate(["a", "b", "c", "d"]):
        proj.add_image(_img(i), name=name)
    lab = np.zeros((16, 20), np.uint8)
    proj.save_label("b", lab, ["liver"], "proposal")
    proj.save_label("c", lab, ["liver"], "proposal")
    proj.save_label("c", lab, ["liver"], "corrected")
    proj.save_label("d", lab, ["liver"], "gold")
    proj.set_uncertainty("b", 0.25, model_version=3)
    proj.set_uncertainty("b", 0.5, model_version=4, disagreement=0.3)      # replaces the previous value
    rows = {r["name"]: r for r in proj.image_status()}
    assert rows["b"]["disagreement"] == 0.3 and rows["a"]["disagreement"] is None
    with pytest.raises(ProjectError, match="disagreement"):
        proj.set_uncertainty("b", 0.5, disagreement=1.5)
    assert [rows[n]["status"] for n in "abcd"] == ["unlabelled", "proposed", "corrected", "gold"]
    assert rows["b"]["uncertainty"] == 0.5 and rows["b"]["model_version"] == 4
    assert rows["a"]["uncertainty"] is None
    with pytest.raises(ProjectError, match="finite"):
        proj.set_uncertainty("a", float("nan"))
    with pytest.raises(ProjectError, match="no image"):
        proj.set_uncertainty("zzz", 0.1)
    assert proj.summary()["images"] == 4          # meta rows do not disturb anything else
