"""The `promptseg` CLI through a real subprocess and a real project on disk."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from promptseg.io import sample_data_dir
from promptseg.project import Project


def run(*args, check=True):
    p = subprocess.run([sys.executable, "-m", "promptseg.cli", *args], capture_output=True, text=True, timeout=900)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture
def nuclei_dirs(tmp_path):
    src = sample_data_dir() / "nuclei"
    shutil.copytree(src / "images", tmp_path / "images")
    shutil.copytree(src / "masks", tmp_path / "masks")
    return tmp_path


def test_init_seeds_gold_labels_then_info_and_propose(nuclei_dirs, tmp_path):
    proj = tmp_path / "proj"
    out = run("init", str(proj), "--images", str(nuclei_dirs / "images"), "--masks", str(nuclei_dirs / "masks"),
              "--class", "nucleus", "--labelled", "2").stdout
    assert "4 images, 2 gold labels" in out
    info = json.loads(run("info", str(proj)).stdout)
    assert info["images"] == 4 and info["labelled"] == 2 and info["classes"] == ["nucleus"]

    out = run("propose", str(proj), "--prompt", "nucleus").stdout
    assert out.count("proposal label rev 1 by ") == 2          # the two unlabelled images
    with Project.open(proj) as p:
        props = p.labels(kinds=("proposal",))
        assert len(props) == 2 and all(r.prompt == "nucleus" for r in props)
        lab, classes = p.read_label(props[0])
        assert classes == ["nucleus"] and lab.shape == (256, 256)
        gold, _ = p.read_label(p.latest_label("nuclei_00"))
        assert gold.max() == 1 and (gold > 0).mean() > 0.05
        assert any(p.root.joinpath("embeddings").rglob("*.npz"))   # embeddings cached on disk


def test_cli_errors_are_messages_not_tracebacks(tmp_path):
    p = run("info", str(tmp_path / "missing"), check=False)
    assert p.returncode == 2 and "error:" in p.stderr and "Traceback" not in p.stderr
    (tmp_path / "empty").mkdir()
    p = run("init", str(tmp_path / "proj"), "--images", str(tmp_path / "empty"), check=False)
    assert p.returncode != 0 and "no images" in p.stderr
    Project.create(tmp_path / "p2").close()
    p = run("propose", str(tmp_path / "p2"), "--prompt", " ; ", check=False)
    assert p.returncode == 2 and "empty prompt" in p.stderr


def test_info_reports_where_the_masks_came_from(nuclei_dirs, tmp_path):
    """`promptseg info` sums the stored masks per source (real SQLite project, real subprocess)."""
    from promptseg.project import MaskSource

    proj = tmp_path / "proj"
    run("init", str(proj), "--images", str(nuclei_dirs / "images"), "--class", "nucleus")
    with Project.open(proj) as p:
        names = [r.name for r in p.images()]
        lab = np.zeros((256, 256), np.uint8)
        lab[10:30, 10:30] = 1                         # two boxed nuclei, 400 px each
        lab[50:70, 50:70] = 1
        lab[100:110, 100:110] = 1                     # one painted, 100 px
        p.save_label(names[0], lab, ["nucleus"], "corrected", dice_vs_proposal=0.5, seconds=12.0,
                     sources=[MaskSource("nucleus", "box", 800, objects=2, score=0.9),
                              MaskSource("nucleus", "painted", 100, objects=1)])
        p.save_label(names[1], lab, ["nucleus"], "proposal")   # a text proposal: its pixels are text's
    info = json.loads(run("info", str(proj)).stdout)["mask_sources"]
    assert info["accepted"]["box"] == {"labels": 1, "pixels": 800, "objects": 2, "dice_vs_proposal": 0.5,
                                       "seconds": 12.0}
    assert info["accepted"]["painted"]["pixels"] == 100 and set(info["accepted"]) == {"box", "painted"}
    assert set(info["proposed"]) == {"text"} and info["proposed"]["text"]["pixels"] == 900
