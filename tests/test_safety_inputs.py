"""Weights checked against the database, bounded configs and sizes, volumes never read as colour,
and clear messages for bad prompts and extreme values."""
import errno
import json
import shutil
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile

from promptseg.io import prepare_image, read_image
from promptseg.io.limits import MAX_PIXELS_ENV, ImageTooLarge
from promptseg.model import checkpoint as ckpt_mod
from promptseg.model.checkpoint import load_checkpoint, save_checkpoint
from promptseg.model.segmenter import ModelConfig, PromptSegModel
from promptseg.project import Project, ProjectError
from promptseg.project.seed import check_inputs, seed_project


@pytest.fixture
def tiny_project(tmp_path):
    save_checkpoint(PromptSegModel(ModelConfig.tiny()), tmp_path / "tiny")
    with Project.create(tmp_path / "p") as p:
        p.register_model(tmp_path / "tiny", config={})
    return tmp_path / "p"


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))


def test_tampered_weights_without_a_config_hash_are_refused_by_the_database_hash(tiny_project):
    folder = tiny_project / "models" / "1"
    cfg = json.loads((folder / "config.json").read_text())
    del cfg["weights_sha256"]
    (folder / "config.json").write_text(json.dumps(cfg))
    load_checkpoint(folder)                        # untampered: loads without the config's hash
    _flip(folder / "model.safetensors")
    with pytest.raises(ValueError, match="project database"):
        load_checkpoint(folder)


def test_the_default_models_hash_is_a_constant_in_the_code(tmp_path, monkeypatch):
    from promptseg.fsutil import file_sha256

    assert file_sha256(ckpt_mod.DEFAULT_CHECKPOINT / "model.safetensors") == ckpt_mod.DEFAULT_WEIGHTS_SHA256
    copy = tmp_path / "default"
    shutil.copytree(ckpt_mod.DEFAULT_CHECKPOINT, copy)
    cfg = json.loads((copy / "config.json").read_text())
    del cfg["weights_sha256"]
    (copy / "config.json").write_text(json.dumps(cfg))
    _flip(copy / "model.safetensors")
    monkeypatch.setattr(ckpt_mod, "DEFAULT_CHECKPOINT", copy.resolve())   # the copy stands for the shipped one
    with pytest.raises(ValueError, match="default model"):
        load_checkpoint(copy)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["decoder"].update(dim=8192), r"decoder: dim = 8192 is out of bounds"),
    (lambda m: m.update(grounding_dim=2 ** 20), r"grounding_dim = 1048576 is out of bounds"),
    (lambda m: m.update(surprise=1), r"unknown model key\(s\) \['surprise'\]"),
    (lambda m: m["decoder"].update(bogus=True), r"unknown decoder key\(s\) \['bogus'\]"),
    (lambda m: m["backbone_kwargs"].update(width=10 ** 9), r"backbone_kwargs width"),
])
def test_config_values_out_of_bounds_are_refused_before_allocating(tmp_path, edit, message):
    folder = save_checkpoint(PromptSegModel(ModelConfig.tiny()), tmp_path / "c")
    cfg = json.loads((folder / "config.json").read_text())
    edit(cfg["model"])
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=message):
        load_checkpoint(folder)


def test_register_model_retries_when_another_process_fills_the_version_folder(tiny_project, tmp_path, monkeypatch):
    from promptseg.project import _models

    real, calls = _models.atomic_replace_dir, []

    def racing(src, dst):   # the other round renamed its folder onto this number first
        calls.append(Path(dst).name)
        if len(calls) == 1:
            raise OSError(errno.ENOTEMPTY, "Directory not empty", str(dst))
        return real(src, dst)

    monkeypatch.setattr(_models, "atomic_replace_dir", racing)
    with Project.open(tiny_project) as p:
        rec = p.register_model(tmp_path / "tiny", config={})
    assert calls == ["2", "3"] and rec.version == 3 and rec.path.is_dir()
    assert not list((tiny_project / "models").glob(".tmp-*"))


@pytest.mark.parametrize("slices", [4, 3])
def test_a_thin_nifti_is_a_volume_with_all_its_mask_slices(tmp_path, slices):
    rng = np.random.default_rng(slices)
    vol = rng.integers(0, 1000, (64, 64, slices)).astype(np.int16)
    mask = np.zeros((64, 64, slices), np.uint8)
    for z in range(slices):
        mask[8 * z:8 * z + 10, 5:20, z] = 1
    (tmp_path / "im").mkdir()
    (tmp_path / "ma").mkdir()
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "im" / "v.nii.gz")
    nib.save(nib.Nifti1Image(mask, np.eye(4)), tmp_path / "ma" / "v.nii.gz")
    assert read_image(tmp_path / "im" / "v.nii.gz")[1]["rgb"] is False
    images, masks = [tmp_path / "im" / "v.nii.gz"], {"v": tmp_path / "ma" / "v.nii.gz"}
    assert check_inputs(images, masks, ["nucleus"]) == []
    with Project.create(tmp_path / "p") as p:
        seed_project(p, images, masks, ["nucleus"])
        rec = p.image("v")
        assert rec.spatial_shape == (64, 64, slices) and rec.rgb is False
        lab, _ = p.read_label(p.latest_label("v"))
        assert lab.shape == (64, 64, slices) and np.array_equal(lab, mask)
    with Project.open(tmp_path / "p") as p:   # the flag survives a reopen
        assert p.image("v").spatial_shape == (64, 64, slices)


def test_multipage_tiff_is_a_volume_and_an_rgb_page_is_colour(tmp_path):
    tifffile.imwrite(tmp_path / "vol.tif", np.zeros((3, 16, 16), np.uint8), photometric="minisblack")
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((16, 16, 3), np.uint8), photometric="rgb")
    assert read_image(tmp_path / "vol.tif")[1]["rgb"] is False
    assert read_image(tmp_path / "rgb.tif")[1]["rgb"] is True


def test_a_mask_whose_shape_differs_from_its_image_is_refused_with_every_other_problem(tmp_path):
    (tmp_path / "im").mkdir()
    (tmp_path / "ma").mkdir()
    tifffile.imwrite(tmp_path / "im" / "a.tif", np.zeros((3, 16, 16), np.uint8), photometric="minisblack")
    tifffile.imwrite(tmp_path / "ma" / "a.tif", np.zeros((16, 16), np.uint8))
    (tmp_path / "im" / "b.png").write_bytes(b"not a png")
    (tmp_path / "im" / "c.tif").write_bytes(b"not a tiff either")
    problems = check_inputs(sorted((tmp_path / "im").iterdir()), {"a": tmp_path / "ma" / "a.tif"}, ["x"])
    assert len(problems) == 3
    assert "shape (16, 16) differs from its image's (3, 16, 16)" in problems[0]
    assert "b.png" in problems[1] and "c.tif" in problems[2]


def test_a_huge_image_gets_the_size_message_quickly_without_allocating(tmp_path, default_predictor):
    huge = np.broadcast_to(np.uint8(7), (20000, 20000))   # a view: no 400 MB array behind it
    t0 = time.perf_counter()
    with pytest.raises(ImageTooLarge, match=rf"20000 x 20000 = 400,000,000 pixels.*{MAX_PIXELS_ENV}"):
        default_predictor.set_image(huge)
    with Project.create(tmp_path / "p") as p, pytest.raises(ProjectError, match=MAX_PIXELS_ENV):
        p.add_image(huge, name="huge")
    tifffile.imwrite(tmp_path / "huge.tif", shape=(20000, 20000), dtype=np.uint8)   # header, sparse data
    with pytest.raises(ImageTooLarge, match=MAX_PIXELS_ENV):
        read_image(tmp_path / "huge.tif")
    assert time.perf_counter() - t0 < 30   # generous: allocating and embedding it took minutes


def test_the_size_limit_is_raised_by_the_environment(tmp_path, monkeypatch):
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((100, 100), np.uint8))
    monkeypatch.setenv(MAX_PIXELS_ENV, "5000")
    with pytest.raises(ImageTooLarge, match="over the limit of 5,000"):
        read_image(tmp_path / "a.tif")
    monkeypatch.setenv(MAX_PIXELS_ENV, "20000")
    assert read_image(tmp_path / "a.tif")[0].shape == (100, 100)


def test_bad_prompts_get_clear_messages(default_predictor, nuclei):
    default_predictor.set_image(nuclei.items[0].image)
    with pytest.raises(ValueError, match="a string or a list of strings, got int"):
        default_predictor.predict(5)
    with pytest.raises(ValueError, match="NUL"):
        default_predictor.predict("nuc\x00leus")
    with pytest.raises(ValueError, match="NUL"):
        default_predictor.predict(["cell", "nuc\x00leus"])


def test_extreme_floats_normalise_to_a_finite_mask(default_predictor, nuclei):
    item = nuclei.items[0]
    img = np.where(item.image > np.median(item.image), 1e308, -1e308).astype(np.float64)
    x = prepare_image(img)
    assert np.isfinite(x).all() and x.min() == 0.0 and x.max() == 1.0
    default_predictor.set_image(img)
    r = default_predictor.predict("nucleus")
    assert np.isfinite(r.probs).all() and np.isfinite(r.presence).all()


def test_embedding_reports_tiles_done_and_can_be_cancelled(nuclei):
    from promptseg import Predictor
    from promptseg.inference.embeddings import EmbeddingCancelled

    p = Predictor(PromptSegModel(ModelConfig.tiny()), device="cpu")   # 64-px tiles: 16 for a 256² image
    seen = []
    with pytest.raises(EmbeddingCancelled, match="after 8 of 16 tiles"):
        p.set_image(nuclei.items[0].image, progress=lambda done, total: seen.append((done, total)),
                    cancel=lambda: len(seen) >= 2)
    assert seen == [(4, 16), (8, 16)] and not p.is_image_set
    seen.clear()
    p.set_image(nuclei.items[0].image, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(4, 16), (8, 16), (12, 16), (16, 16)] and p.is_image_set
