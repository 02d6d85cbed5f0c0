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
