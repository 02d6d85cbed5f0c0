"""Shipped sample data and the napari reader/writer/sample glue (no viewer needed)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from promptseg.io import list_samples, load_sample, read_image, sample_data_dir
from promptseg.napari._io import get_reader, read_layers, write_labels_layer
from promptseg.napari._sample_data import brain_sample, nuclei_sample


def test_sample_dir_is_small() -> None:
    root = sample_data_dir()
    total = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    assert total < 5 * 1024 * 1024, f"sample_data is {total} bytes"
    assert (root / "README.md").is_file()
    assert list_samples() == ["brain", "nuclei"]


def test_unknown_sample_lists_available() -> None:
    with pytest.raises(ValueError, match="brain, nuclei"):
        load_sample("kidney")


def test_nuclei_sample() -> None:
    s = load_sample("nuclei")
    assert s.classes == ["nucleus"]
    assert [it.name for it in s.items] == [f"nuclei_0{k}" for k in range(4)]
    for it in s.items:
        assert it.image.shape == it.mask.shape == (256, 256)
        assert it.image.dtype == np.uint8 and it.mask.dtype == np.uint8
        assert set(np.unique(it.mask)) == {0, 1}


def test_brain_sample_every_class_appears() -> None:
    s = load_sample("brain")
    meta = json.loads((sample_data_dir() / "brain" / "classes.json").read_text())
    assert 12 <= len(s.classes) <= 14 and s.classes == meta["classes"]
    assert set(meta["aal_to_class"].values()) == set(s.classes)
    assert len(meta["aal_to_class"]) == 116
    assert len(s.items) == 24
    seen: set[int] = set()
    for it in s.items:
        assert it.image.shape == it.mask.shape and it.image.ndim == 2
        assert it.mask.max() <= len(s.classes)
        seen |= set(np.unique(it.mask).tolist())
    assert seen == set(range(len(s.classes) + 1))


def test_sample_layers() -> None:
    for fn, classes in ((nuclei_sample, ["nucleus"]), (brain_sample, None)):
        (img, img_kw, img_type), (lab, lab_kw, lab_type) = fn()
        assert (img_type, lab_type) == ("image", "labels")
        assert img.shape == lab.shape
        assert lab_kw["name"] == f"{img_kw['name']} ground truth"
        assert lab_kw["features"]["class"][0] == "background"
        if classes:
            assert lab_kw["metadata"]["classes"] == classes


def test_reader_scale_matches_nifti_spacing(tmp_path: Path) -> None:
    affine = np.diag([0.9, 1.1, 2.5, 1.0])
    vol = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(vol, affine), path)
    reader = get_reader(str(path))
    assert reader is read_layers
    assert get_reader([str(path)]) is read_layers
    assert get_reader(str(tmp_path / "x.png")) is None
    [(data, kw, kind)] = reader(str(path))
    assert kind == "image" and kw["name"] == "scan"
    _, meta = read_image(path)
    assert kw["scale"] == pytest.approx(meta["spacing"])
    assert kw["scale"] == pytest.approx((0.9, 1.1, 2.5))
    np.testing.assert_allclose(kw["metadata"]["affine"], affine)
    np.testing.assert_array_equal(data, vol)

    # Write labels back through the napari writer: the grid must survive.
    out = str(tmp_path / "scan_labels.nii.gz")
    assert write_labels_layer(out, (data > 50).astype(np.int32), kw) == [out]
    back, back_meta = read_image(out)
    np.testing.assert_allclose(back_meta["affine"], affine)
    assert back.dtype == np.uint8 and int(back.sum()) == int((vol > 50).sum())

    tif = str(tmp_path / "lab.tif")
    write_labels_layer(tif, np.ones((2, 3), np.uint8), {"scale": (0.5, 0.25)})
    assert read_image(tif)[1]["spacing"] == (0.5, 0.25)


def test_reader_claims_dicom_folder(tmp_path: Path) -> None:
    from test_io import make_dicom_series

    make_dicom_series(tmp_path / "ct", [0.0, 2.0])
    assert get_reader(str(tmp_path / "ct")) is read_layers
    [(data, kw, _)] = read_layers(str(tmp_path / "ct"))
    assert data.shape == (2, 6, 5) and kw["scale"] == pytest.approx((2.0, 0.7, 0.8))
    (tmp_path / "plain").mkdir()
    assert get_reader(str(tmp_path / "plain")) is None
