"""Real-file tests for promptseg.io: readers, writers, normalisation."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
from PIL import Image

from promptseg.fsutil import array_sha256
from promptseg.io import prepare_image, read_image, spatial_shape, write_labels

RNG = np.random.default_rng(0)


# ----------------------------------------------------------------- helpers
def make_dicom_series(folder: Path, z_positions: list[float], pixel_spacing=(0.7, 0.8),
                      slope: float = 1.0, intercept: float = -1024.0) -> list[np.ndarray]:
    """Write one axial CT-like series (one file per z) built from scratch with pydicom."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series_uid, study_uid = generate_uid(), generate_uid()
    frames = []
    for k, z in enumerate(z_positions):
        px = (np.full((6, 5), 1000 + int(z) * 10, np.uint16) + np.arange(5, dtype=np.uint16))
        frames.append(px)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.Modality = "CT"
        ds.PatientName = "Test^Phantom"
        ds.InstanceNumber = k + 1  # deliberately unrelated to position order
        ds.ImagePositionPatient = [-10.0, -20.0, float(z)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = list(pixel_spacing)
        ds.SliceThickness = 99.0  # wrong on purpose: positions must win
        ds.Rows, ds.Columns = px.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 0
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.PixelData = px.tobytes()
        ds.save_as(folder / f"slice_{k}.dcm", enforce_file_format=True)
    return frames


# ------------------------------------------------------------ round trips
def test_tif_roundtrip_with_spacing(tmp_path: Path) -> None:
    labels = RNG.integers(0, 5, (4, 10, 12)).astype(np.int64)
    out = write_labels(tmp_path / "lab.tif", labels, {"spacing": (2.5, 0.5, 0.25)})
    data, meta = read_image(out)
    np.testing.assert_array_equal(data, labels)
    assert data.dtype == np.uint8  # compacted from int64
    assert meta["spacing"] == (2.5, 0.5, 0.25)
    assert meta["format"] == "tiff" and meta["source"] == str(out)


def test_png_and_tiff_images(tmp_path: Path) -> None:
    gray16 = RNG.integers(0, 60000, (20, 30)).astype(np.uint16)
    Image.fromarray(gray16).save(tmp_path / "g.png")
    rgb = RNG.integers(0, 255, (20, 30, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    tifffile.imwrite(tmp_path / "plain.tiff", gray16)
    for name, expected in (("g.png", gray16), ("c.png", rgb), ("plain.tiff", gray16)):
        data, meta = read_image(tmp_path / name)
        np.testing.assert_array_equal(data, expected)
        assert meta["spacing"] == (1.0, 1.0)


def test_nifti_roundtrip_keeps_affine_and_spacing(tmp_path: Path) -> None:
    affine = np.array([[0, 0, -1.5, 30], [2.0, 0, 0, -40], [0, 3.0, 0, 12], [0, 0, 0, 1]])
    vol = RNG.normal(size=(5, 6, 7)).astype(np.float32)
    nib.save(nib.Nifti1Image(vol, affine), tmp_path / "vol.nii.gz")
    data, meta = read_image(tmp_path / "vol.nii.gz")
    np.testing.assert_array_equal(data, vol)  # file voxel order, no reorientation
    np.testing.assert_allclose(meta["affine"], affine)
    assert meta["spacing"] == (2.0, 3.0, 1.5)
    assert meta["format"] == "nifti" and len(meta["axes"]) == 3

    labels = (data > 0).astype(np.uint8) * 3
    write_labels(tmp_path / "lab.nii.gz", labels, meta)
    back, meta2 = read_image(tmp_path / "lab.nii.gz")
    np.testing.assert_array_equal(back, labels)
    np.testing.assert_allclose(meta2["affine"], affine)
    assert meta2["spacing"] == meta["spacing"]

    # Without an affine the spacing becomes the diagonal.
    write_labels(tmp_path / "lab2.nii", labels.astype(bool), {"spacing": (0.5, 0.6, 0.7)})
    back2, meta3 = read_image(tmp_path / "lab2.nii")
    assert back2.dtype == np.uint8 and meta3["spacing"] == pytest.approx((0.5, 0.6, 0.7))


def test_dicom_series_sorted_by_position(tmp_path: Path) -> None:
    folder = tmp_path / "series"
    z_positions = [5.0, -1.0, 2.0]  # files written out of anatomical order
    frames = make_dicom_series(folder, z_positions)
    (folder / "README.txt").write_text("not dicom")  # side files are ignored
    data, meta = read_image(folder)
    assert data.shape == (3, 6, 5)
    order = np.argsort(z_positions)
    expected = np.stack([frames[i] for i in order]).astype(np.int32) - 1024
    np.testing.assert_array_equal(data, expected)
    assert data.dtype == np.int16  # integer rescale keeps integer HU
    assert meta["spacing"] == pytest.approx((3.0, 0.7, 0.8))
    assert meta["format"] == "dicom"
    # affine maps voxel (0,0,0) to the lowest slice's position, in RAS
    np.testing.assert_allclose(np.asarray(meta["affine"])[:3, 3], [10.0, 20.0, -1.0])

    one, meta1 = read_image(folder / "slice_0.dcm")
    np.testing.assert_array_equal(one, frames[0].astype(np.int32) - 1024)
    assert meta1["spacing"] == pytest.approx((0.7, 0.8))


def test_dicom_float_rescale(tmp_path: Path) -> None:
    make_dicom_series(tmp_path / "s", [0.0, 1.5], slope=0.5, intercept=0.25)
    data, meta = read_image(tmp_path / "s")
    assert data.dtype == np.float32
    assert meta["spacing"][0] == pytest.approx(1.5)


# ------------------------------------------------------------ bad inputs
@pytest.mark.parametrize("name", ["bad.tif", "bad.nii.gz", "bad.nii", "bad.png", "bad.jpg", "bad.dcm"])
def test_corrupt_files_raise_valueerror_with_path(tmp_path: Path, name: str) -> None:
    p = tmp_path / name
    p.write_bytes(os.urandom(64) + b"this is not an image" * 20)
    with pytest.raises(ValueError, match="cannot read") as info:
        read_image(p)
    assert str(p) in str(info.value)


def test_truncated_png(tmp_path: Path) -> None:
    p = tmp_path / "t.png"
    Image.fromarray(RNG.integers(0, 255, (64, 64), dtype=np.uint8)).save(p)
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(ValueError, match=str(p).replace("\\", "\\\\")):
        read_image(p)


def test_missing_and_unsupported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.tif"):
        read_image(tmp_path / "nope.tif")
    (tmp_path / "x.xyz").write_text("hello")
    with pytest.raises(ValueError, match="unsupported"):
        read_image(tmp_path / "x.xyz")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ValueError, match="no readable DICOM"):
        read_image(tmp_path / "empty_dir")


# ------------------------------------------------------------ writer
def test_write_labels_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "labels.tif"
    first = np.arange(12, dtype=np.uint16).reshape(3, 4)
    write_labels(target, first)
    before = target.read_bytes()
    with pytest.raises(ValueError, match="integer or bool"):
        write_labels(target, first.astype(np.float32))
    assert target.read_bytes() == before
    write_labels(target, first + 1)
    np.testing.assert_array_equal(read_image(target)[0], first + 1)
    assert sorted(os.listdir(tmp_path)) == ["labels.tif"]  # no temp files left behind
    with pytest.raises(ValueError, match="unsupported extension"):
        write_labels(tmp_path / "labels.png", first)
    assert sorted(os.listdir(tmp_path)) == ["labels.tif"]


def test_write_failure_leaves_old_file(tmp_path: Path) -> None:
    target = tmp_path / "vol.nii.gz"
    write_labels(target, np.ones((2, 2, 2), np.uint8))
    before = target.read_bytes()
    with pytest.raises(ValueError):
        write_labels(target, np.ones((2, 2, 2), np.uint8), {"affine": np.eye(3)})
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["vol.nii.gz"]


# ------------------------------------------------------------ normalisation
@pytest.mark.parametrize(
    "img",
    [
        RNG.integers(0, 65535, (40, 50)).astype(np.uint16),
        RNG.integers(-1000, 3000, (40, 50)).astype(np.int16),
        RNG.normal(size=(40, 50)),
        RNG.integers(0, 255, (40, 50, 4)).astype(np.uint8),
        RNG.integers(0, 255, (40, 50, 1)).astype(np.uint8),
        RNG.random((3, 40, 50)).astype(np.float32),
        RNG.random((1, 40, 50)),
        RNG.random((40, 50)) > 0.5,
    ],
    ids=["uint16", "int16", "float64", "rgba", "hw1", "chw3", "chw1", "bool"],
)
def test_prepare_image_valid(img: np.ndarray) -> None:
    out = prepare_image(img)
    assert out.shape == (40, 50, 3) and out.dtype == np.float32
    assert out.flags.c_contiguous
    assert out.min() == 0.0 and out.max() == 1.0
    assert spatial_shape(img) == (40, 50)


def test_prepare_image_values() -> None:
    rgba = np.zeros((6, 7, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[0, 0, 0] = 100
    rgba[..., 3] = 255  # alpha must not take part in the scaling
    out = prepare_image(rgba)
    assert out[0, 0, 0] == pytest.approx(0.5) and out[1, 1, 0] == 1.0 and out[..., 1].max() == 0.0
    chw = np.stack([np.full((5, 8), v, np.float32) for v in (0.0, 1.0, 2.0)])
    np.testing.assert_allclose(prepare_image(chw)[2, 3], [0.0, 0.5, 1.0])
    const = prepare_image(np.full((9, 9), 7, np.int32))
    assert not np.isnan(const).any() and const.max() == 0.0


@pytest.mark.parametrize("dtype, lo, hi", [(np.uint8, 0, 256), (np.uint8, 3, 9), (np.uint16, 0, 65536),
                                           (np.int16, -32768, 32768), (np.int8, -128, 128), (np.uint16, 7, 8)])
def test_prepare_image_8_and_16_bit_give_the_exact_float64_scaling(dtype, lo: int, hi: int) -> None:
    """8/16-bit images take a lookup-table path; its values are the float64 min-max scaling,
    bit for bit, for gray and RGB, unsigned and signed, and a constant image."""
    for shape in ((33, 47), (33, 47, 3)):
        img = RNG.integers(lo, hi, shape).astype(dtype)
        work = img.astype(np.float64)
        span = work.max() - work.min()
        want = ((work - work.min()) / span if span else np.zeros_like(work)).astype(np.float32)
        want = np.broadcast_to(want[..., None] if want.ndim == 2 else want, (33, 47, 3))
        np.testing.assert_array_equal(prepare_image(img), want)


@pytest.mark.parametrize(
    "img, pattern",
    [
        (np.zeros((0, 5)), "zero-size"),
        (np.zeros((4, 20, 30, 3)), "got a 4-D array of shape \\(4, 20, 30, 3\\).*one slice"),
        (np.zeros(10), "got a 1-D array"),
        (np.zeros((20, 30, 2)), "expected 1, 3 or 4 channels.*got 2"),
        (np.zeros((64, 20, 30)), "channels.*\\(64, 20, 30\\)"),
        (np.zeros((4, 20, 30)), "channel-first image with 4 channels"),
        (np.array([[1.0, np.nan], [np.inf, 2.0]]), "NaN/Inf values \\(2 pixels\\)"),
        (np.zeros((4, 4), np.complex64), "complex"),
        (np.array([["a", "b"], ["c", "d"]]), "numeric dtype.*<U1"),
        (np.empty((3, 3), object), "numeric dtype.*object"),
    ],
)
def test_prepare_image_errors(img: np.ndarray, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        prepare_image(img)


def test_array_sha256_distinguishes_shape_and_dtype() -> None:
    a = np.arange(12, dtype=np.uint8)
    assert array_sha256(a) == array_sha256(a.copy())
    assert array_sha256(a) != array_sha256(a.reshape(3, 4))
    assert array_sha256(a) != array_sha256(a.view(np.int8))
    assert array_sha256(a.reshape(3, 4).T) == array_sha256(np.ascontiguousarray(a.reshape(3, 4).T))
