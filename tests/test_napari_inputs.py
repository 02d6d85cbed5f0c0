"""Bad inputs and file round-trips through the GUI: a message, no crash, nothing lost."""
import nibabel as nib
import numpy as np
import pytest

from test_napari_project import open_dock, propose, tiny_project

napari = pytest.importorskip("napari")
pytestmark = pytest.mark.gui


def test_rgba_16bit_4d_empty_prompt_and_corrupt_file(make_napari_viewer, qtbot, tmp_path, nuclei):
    from promptseg.project import Project

    project = tiny_project(tmp_path)
    viewer, widget = open_dock(make_napari_viewer, project)
    base = nuclei.items[0].image[:64, :64].astype(np.float32)
    base = (base - base.min()) / (base.max() - base.min())
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., :3] = (base[..., None] * 255).astype(np.uint8)
    rgba[..., 3] = 255
    deep = (base * 60000 + 1000).astype(np.uint16)            # 16-bit, beyond 8-bit range
    viewer.add_image(rgba, name="rgba", rgb=True)
    viewer.add_image(deep, name="deep")
    viewer.add_image(np.zeros((2, 2, 16, 16), np.float32), name="four_d")

    widget.image_combo.setCurrentText("rgba")
    widget.prompt_edit.setText(" ; ")                          # empty prompt: message, nothing runs
    widget.propose_btn.click()
    assert "⚠" in widget.status.text() and "prompt" in widget.status.text() and widget._worker is None
    widget.image_combo.setCurrentText("four_d")
    widget.prompt_edit.setText("nucleus")
    widget.propose_btn.click()
    assert "4 dimensions" in widget.status.text() and "four_d promptseg" not in viewer.layers

    for name in ("rgba", "deep"):                              # both segment like any image
        widget.image_combo.setCurrentText(name)
        propose(widget, qtbot)
        assert viewer.layers[f"{name} promptseg"].data.shape == (64, 64)
        widget.project_panel.accept_btn.click()
        assert f"accepted {name}" in widget.project_panel.accept_msg.text()
    with Project.open(project) as p:                           # stored without loss: dtype, channels
        assert np.array_equal(p.read_image("rgba"), rgba)
        saved = p.read_image("deep")
        assert saved.dtype == np.uint16 and np.array_equal(saved, deep)

    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"this is not a NIfTI file")
    n = len(viewer.layers)
    with pytest.raises(ValueError, match="cannot read .*broken.nii.gz"):   # napari shows this message
        viewer.open(str(bad), plugin="napari-promptseg")
    assert len(viewer.layers) == n and "deep promptseg" in viewer.layers


def test_nifti_spacing_round_trip_through_reader_and_writer(make_napari_viewer, qtbot, tmp_path):
    vol = np.random.default_rng(4).integers(0, 3000, (5, 40, 48)).astype(np.int16)
    affine = np.diag([0.6, 0.8, 2.5, 1.0])                      # x, y, z voxel sizes (mm)
    src = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(np.transpose(vol, (2, 1, 0)), affine), src)   # nibabel: x, y, z order

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-promptseg", "PromptSeg")
    layers = viewer.open(str(src), plugin="napari-promptseg")
    img = layers[0]
    spacing = tuple(float(s) for s in img.scale)
    assert sorted(spacing) == pytest.approx([0.6, 0.8, 2.5]) and img.data.shape[spacing.index(2.5)] == 5

    # Propose on the slice on screen (tiny model): the 2-D proposal keeps the in-plane spacing.
    widget.checkpoint = str(tiny_project(tmp_path).parent / "tiny")
    widget.image_combo.setCurrentText(img.name)
    viewer.dims.set_current_step(0, 2)
    propose(widget, qtbot)
    prop = viewer.layers[f"{img.name} promptseg"]
    assert tuple(prop.scale) == pytest.approx(spacing[-2:])

    # A volume label built from it, saved through the plugin's writer, reads back identically.
    vol_labels = np.zeros(img.data.shape, np.uint8)
    vol_labels[2] = prop.data
    vol_labels[0, :4, :4] = 1
    lab = viewer.add_labels(vol_labels, name="vol labels", scale=img.scale, metadata=dict(img.metadata))
    out = tmp_path / "vol_labels.nii.gz"
    lab.save(str(out), plugin="napari-promptseg")
    back = viewer.open(str(out), plugin="napari-promptseg")[0]
    assert tuple(back.scale) == pytest.approx(spacing)
    assert np.array_equal(np.asarray(back.data).astype(np.uint8), vol_labels)
    hdr = nib.load(out).header.get_zooms()
    assert sorted(float(z) for z in hdr) == pytest.approx([0.6, 0.8, 2.5])
