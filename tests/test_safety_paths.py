"""A project edited or built by someone else cannot make promptseg read or write outside it."""
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from promptseg.project import Project, ProjectError


def _project(tmp_path: Path) -> Path:
    with Project.create(tmp_path / "q" / "P") as p:
        img = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32)
        p.add_image(img, name="nuclei_03")
        p.save_label("nuclei_03", (img > 500).astype(np.uint8), ["nucleus"], "gold")
    return tmp_path / "q" / "P"


def _sql(project: Path, statement: str) -> None:
    con = sqlite3.connect(project / "project.sqlite")
    with con:
        con.execute(statement)
    con.close()


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_a_dotdot_image_name_is_refused_naming_the_row_and_nothing_is_written_outside(tmp_path):
    project = _project(tmp_path)
    _sql(project, "UPDATE images SET name='../../../outside'")
    before = _files(tmp_path)
    with pytest.raises(ProjectError, match=r"images row 1.*'\.\./\.\./\.\./outside'"):
        Project.open(project)
    p = subprocess.run([sys.executable, "-m", "promptseg.cli", "propose", str(project), "--prompt", "nucleus"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "images row 1" in p.stderr and "Traceback" not in p.stderr
    assert _files(tmp_path) == before       # no outside/1.tif anywhere


def test_a_symlinked_label_folder_is_refused_and_its_target_stays_empty(tmp_path):
    project = _project(tmp_path)
    elsewhere = tmp_path / "some_dir"
    elsewhere.mkdir()
    with Project.open(project) as p:
        os.rename(project / "labels" / "nuclei_03", tmp_path / "moved")
        os.symlink(elsewhere, project / "labels" / "nuclei_03")
        with pytest.raises(ProjectError, match="symbolic link"):
            p.save_label("nuclei_03", np.ones((32, 32), np.uint8), ["nucleus"], "proposal")
        with pytest.raises(ProjectError, match="symbolic link"):   # and reading through it
            p.labels()
    assert list(elsewhere.iterdir()) == []


def test_an_image_path_out_of_the_project_is_refused_without_reading_it(tmp_path):
    project = _project(tmp_path)
    victim = tmp_path / "q" / "victim"
    victim.mkdir()
    (victim / "passwd").write_bytes(b"root:SECRET-BYTES:0:0")
    for path in ("../../victim/passwd", str(victim / "passwd")):
        _sql(project, f"UPDATE images SET path='{path}'")
        with pytest.raises(ProjectError) as err:
            Project.open(project)
        assert "images row 1" in str(err.value) and "SECRET" not in str(err.value) and "root:" not in str(err.value)


def test_a_symlinked_image_file_is_refused(tmp_path):
    project = _project(tmp_path)
    outside = tmp_path / "outside.tif"
    os.replace(project / "images" / "nuclei_03.tif", outside)
    os.symlink(outside, project / "images" / "nuclei_03.tif")
    with pytest.raises(ProjectError, match="images row 1.*symbolic link"):
        Project.open(project)


def test_empty_database_next_to_project_files_is_refused_not_reinitialised(tmp_path):
    project = _project(tmp_path)
    for extra in project.glob("project.sqlite*"):
        extra.unlink()
    (project / "project.sqlite").write_bytes(b"")
    with pytest.raises(ProjectError, match="index was lost"):
        Project.open(project)
    with pytest.raises(ProjectError, match="index was lost"):
        Project.open_or_create(project)
    assert (project / "project.sqlite").stat().st_size == 0
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "project.sqlite").write_bytes(b"")   # nothing else there: an empty project is fine
    Project.open(fresh).close()


def test_version_1_database_migrates_keeping_rounds_and_guessing_colour(tmp_path):
    from promptseg.project import schema

    db = tmp_path / "old" / "project.sqlite"
    db.parent.mkdir()
    con = sqlite3.connect(db)
    schema.MIGRATIONS[0](con)
    con.execute("PRAGMA user_version = 1")
    con.execute("INSERT INTO rounds(config, status, metrics, started) VALUES ('{}', 'done', '{}', 1.0)")
    con.execute("INSERT INTO images(name, path, sha256, shape, dtype, added) VALUES "
                "('rgb', 'images/rgb.tif', 'x', '[8, 8, 3]', 'uint8', 1.0)")
    con.commit()
    con.close()
    with Project.open(db.parent) as p:
        assert [r.status for r in p.rounds()] == ["done"]
        assert p.image("rgb").spatial_shape == (8, 8)     # unknown flag: the old guess
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "promptseg.cli", *args], capture_output=True, text=True, timeout=300)


def test_init_checks_every_input_before_creating_anything_and_runs_twice_without_doubling(tmp_path):
    from PIL import Image

    from promptseg.io import sample_data_dir

    src = sample_data_dir() / "nuclei"
    proj = tmp_path / "proj"
    p = _cli("init", str(proj), "--images", str(tmp_path / "missing"))
    assert p.returncode != 0 and "does not exist" in p.stderr and not proj.exists()

    images, masks = tmp_path / "images", tmp_path / "masks"
    shutil.copytree(src / "images", images)
    shutil.copytree(src / "masks", masks)
    (images / "broken.png").write_bytes(b"not a png")
    first_mask = sorted(masks.iterdir())[0]
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(first_mask)   # wrong shape for its image
    p = _cli("init", str(proj), "--images", str(images), "--masks", str(masks), "--class", "nucleus")
    assert p.returncode != 0 and "nothing was created" in p.stderr
    assert "broken.png" in p.stderr and f"mask {first_mask}" in p.stderr   # both problems at once
    assert not proj.exists()

    (images / "broken.png").unlink()
    shutil.copy(src / "masks" / first_mask.name, first_mask)
    args = ("init", str(proj), "--images", str(images), "--masks", str(masks), "--class", "nucleus")
    for _ in range(2):
        p = _cli(*args)
        assert p.returncode == 0 and "4 images, 4 gold labels" in p.stdout, p.stderr
    with Project.open(proj) as pr:
        assert len(pr.labels(kinds=("gold",))) == 4 and len(pr.images()) == 4
