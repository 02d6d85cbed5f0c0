"""`promptseg bench prompts --quick`: the small dev set, real models, quality thresholds."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from promptseg.cli import main

MONUSEG = Path(os.environ.get("PROMPTSEG_DATA", "data")) / "monuseg"


def test_bench_prompts_quick(tmp_path, capsys):
    pytest.importorskip("nibabel")
    if not Path("/usr/share/mricron/templates/aal.nii.gz").is_file():
        pytest.skip("mricron-data (Colin27/AAL) is not installed")
    dev, out = tmp_path / "dev", tmp_path / "out"
    assert main(["bench", "prompts", "--make-dev", str(dev), "--quick", "--monuseg", str(MONUSEG),
                 "--data", str(dev), "--out", str(out)]) == 0
    doc = json.loads((out / "results.json").read_text())["results"][0]
    mean, groups = doc["mean"], doc["per_group"]
    assert {"brain", "brain-cerebellar", "stardist-nuclei"} <= set(groups)
    assert doc["n_targets"] == len(doc["rows"]) >= 6
    # boxes work on anything, far above the text prompt of classes it never learnt
    assert mean["box"] >= 0.7 and mean["box"] >= mean["text"] + 0.3
    # and at least as well as the original LiteMedSAM with the same boxes, same run
    assert mean["box"] >= mean["litemedsam_box"] - 0.02
    assert mean["click1"] >= 0.6 and mean["click3"] >= 0.7
    # "more like this" is timed here; its quality is tested on MoNuSeg in test_more_like_this.py
    for kind in ("text", "box", "click1", "click3", "more_like_this", "litemedsam_box", "view_embedding",
                 "zoom_embedding"):
        assert doc["latency"][kind]["n"] >= 1
    for kind in ("box", "click1", "click3", "litemedsam_box"):   # each decode timed repeatedly per target
        assert doc["latency"][kind]["n"] == 3 * doc["n_targets"]
    assert doc["latency"]["litemedsam_box"]["vs_litemedsam_box"] == 1.0 and doc["load_average"]["max"] >= 0
    assert (out / "results.md").is_file() and (out / "prompts.png").is_file()
    assert "litemedsam_box" in capsys.readouterr().out


def test_bench_prompts_rejects_a_folder_without_targets(tmp_path):
    from promptseg.bench.prompt_data import read_targets

    (tmp_path / "targets.csv").write_text("image,mask\nfoo.png,foo.png\n")
    with pytest.raises(ValueError, match="missing columns"):
        read_targets(tmp_path)


def test_cerebellar_check_is_cerebellar_only_on_slices_no_click_training_or_dev_set_uses(tmp_path):
    import csv
    import sys

    import numpy as np
    from PIL import Image

    pytest.importorskip("nibabel")
    if not Path("/usr/share/mricron/templates/aal.nii.gz").is_file():
        pytest.skip("mricron-data (Colin27/AAL) is not installed")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from train_click_head import train_slices

    from promptseg.bench.prompt_data import SLICES, brain_targets, read_targets

    check = tmp_path / "check"
    assert main(["bench", "prompts", "--make-cerebellar-check", str(check)]) == 0
    targets = read_targets(check)
    assert len(targets) >= 40 and {t.extra["group"] for t in targets} == {"brain-cerebellar"}
    assert {t.extra["plane"] for t in targets} == {"axial", "coronal", "sagittal"}
    assert all(np.asarray(Image.open(check / "masks" / t.mask)).astype(bool).sum() >= 40 for t in targets)
    # its slices are neither the dev set's nor the click head's training slices
    used = {}
    for plane in SLICES:
        for source in (SLICES, train_slices()):
            used.setdefault(plane, set()).update(source[plane])
    with (check / "targets.csv").open(newline="") as fh:
        names = {r["image"] for r in csv.DictReader(fh)}
    used_names = {n for n, _, _ in brain_targets(Path("/usr/share/mricron/templates"),
                                                 {p: tuple(sorted(f)) for p, f in used.items()}, min_area=40)}
    assert names and not names & used_names
