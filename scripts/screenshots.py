"""Screenshots of the PromptSeg widget for docs/ (run under Xvfb: xvfb-run -a python ...).

    xvfb-run -a .venv/bin/python scripts/screenshots.py [propose] [project] [retrain]

propose: a proposal on the brain and the nuclei sample (shipped default checkpoint).
project: a project of the four nuclei tiles: Propose all, the image list with uncertainty,
         Next, a prompt mapped onto a class (boxes, clicks and more like this:
         tests/test_napari_refine.py with PROMPTSEG_SCREENSHOTS=docs/screenshots).
retrain: a real `promptseg train` round from the dock (5 gold labels, so one is held out for
         validation Dice), with the live plot and the rounds table.
volume:  20 axial slices of Colin27 (mricron-data), All slices with three structures.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

OUT = Path(__file__).resolve().parents[1] / "docs" / "screenshots"


def wait(pred, timeout=600):
    t0 = time.time()
    while not pred() and time.time() - t0 < timeout:
        QApplication.processEvents()
        time.sleep(0.05)
    if not pred():
        raise TimeoutError("the widget did not finish in time")


def settle(n=20):
    for _ in range(n):
        QApplication.processEvents()
        time.sleep(0.05)


def viewer_with_dock():
    viewer = napari.Viewer()
    viewer.window.resize(1500, 1000)
    _, w = viewer.window.add_plugin_dock_widget("napari-promptseg", "PromptSeg")
    return viewer, w


def propose(w, text):
    w.prompt_edit.setText(text)
    w.propose_btn.click()
    wait(lambda: w._worker is None and w.propose_btn.isEnabled())
    settle()
    print(" ", w.status.text())


def shot(viewer, name):
    settle()
    viewer.screenshot(str(OUT / name), canvas_only=False)
    print("wrote", OUT / name)


def scene_propose() -> None:
    for sample, prompt in [("brain", "thalamus; putamen; caudate; cerebellum"), ("nuclei", "nucleus")]:
        viewer, w = viewer_with_dock()
        viewer.open_sample("napari-promptseg", sample)
        for ly in viewer.layers:
            if ly.name.endswith("ground truth"):
                ly.visible = False
        w.image_combo.setCurrentText([ly.name for ly in viewer.layers if not ly.name.endswith("truth")][0])
        propose(w, prompt)
        shot(viewer, f"propose_{sample}.png")
        viewer.close()


def scene_project(root: Path) -> None:
    from promptseg.io import load_sample
    from promptseg.project import Project

    sample = load_sample("nuclei")
    with Project.create(root / "nuclei-project") as p:
        for item in sample.items:
            p.add_image(item.image, name=item.name)
        p.add_class("nucleus")
    viewer, w = viewer_with_dock()
    panel, images = w.project_panel, w.project_panel.images
    panel.path_edit.setText(str(root / "nuclei-project"))
    panel.open_btn.click()
    images.next_btn.click()
    propose(w, "nucleus")                       # loads the model; the dock then embeds ahead
    images.batch_btn.click()                    # Propose all: uncertainty for every image
    wait(lambda: not w.batch.busy)
    images.next_btn.click()                     # the most uncertain one
    settle()
    shot(viewer, "project_list.png")

    # A synonym typed as a prompt reuses the class.
    images.next_btn.click()
    propose(w, "cell nucleus")
    shot(viewer, "prompt_mapping.png")
    viewer.close()


def scene_retrain(root: Path) -> None:
    from promptseg.io import load_sample
    from promptseg.project import Project

    sample = load_sample("nuclei")
    with Project.create(root / "retrain-project") as p:
        for i, item in enumerate(sample.items):  # quarters of the 4 tiles; 6 gold labels (1 held out)
            for q in range(2):
                y, x = 128 * q, 128 * q
                name = f"{item.name}_q{q}"
                p.add_image(item.image[y:y + 128, x:x + 128], name=name)
                if i < 3:
                    p.save_label(name, (item.mask[y:y + 128, x:x + 128] > 0).astype(np.uint8), ["nucleus"], "gold")
    viewer, w = viewer_with_dock()
    panel = w.project_panel
    panel.path_edit.setText(str(root / "retrain-project"))
    panel.open_btn.click()
    panel.steps.setValue(10)
    panel.views.setValue(2)                     # each training label also turned 90° (one more encoder pass)
    panel.retrain_btn.click()
    wait(lambda: panel.proc is None, timeout=1800)
    print(" ", panel.info.text())
    panel.images.next_btn.click()
    propose(w, "nucleus")                       # the new model version answers
    w.scroll_to(panel.retrain_box)
    shot(viewer, "retrain_plot.png")
    panel.monitor.setCurrentWidget(panel.rounds_table)
    shot(viewer, "rounds_table.png")
    viewer.close()


def scene_volume() -> None:
    """20 axial slices of Colin27 (mricron-data): propose on one slice, correct nothing,
    All slices, then show the volume proposal on another slice."""
    from promptseg.bench.aal import load_volumes

    t1, _, _ = load_volumes()
    vol = np.flip(np.transpose(t1, (2, 1, 0)), 1)[62:82].astype(np.float32)   # (z, y, x), anterior up
    viewer, w = viewer_with_dock()
    viewer.add_image(vol, name="colin27 T1", scale=(1.0, 1.0, 1.0))
    w.image_combo.setCurrentText("colin27 T1")
    w.prompt_edit.setText("thalamus; putamen; caudate")
    w.volume_panel.all_btn.click()
    wait(lambda: not w.volume_panel.busy)
    settle()
    print(" ", w.volume_panel.note.text())
    viewer.dims.set_current_step(0, 12)
    w.scroll_to(w.volume_panel)
    shot(viewer, "volume.png")
    viewer.close()


def scene_propagate() -> None:
    """The same 20 slices: the atlas' thalamus, putamen and caudate drawn on slice 10 only, then
    Propagate in each mode (the printed Dice is against the atlas); the shot is of the default."""
    from promptseg.bench.aal import load_volumes
    from promptseg.training.evaluate import per_class_dice

    t1, atlas, classes = load_volumes()
    as_view = lambda v: np.flip(np.transpose(v, (2, 1, 0)), 1)[62:82]     # noqa: E731  (z, y, x), anterior up
    vol, lab = as_view(t1).astype(np.float32), as_view(atlas)
    names = ["thalamus", "putamen", "caudate"]
    truth = np.zeros(lab.shape, np.int32)
    for k, name in enumerate(names, 1):
        truth[lab == classes.index(name) + 1] = k
    viewer, w = viewer_with_dock()
    viewer.add_image(vol, name="colin27 T1")
    w.image_combo.setCurrentText("colin27 T1")
    panel = w.volume_panel
    for mode in ("model", "flow+model", "flow"):
        viewer.dims.set_current_step(0, 10)
        propose(w, "; ".join(names))
        viewer.layers["colin27 T1 promptseg"].data = truth[10].copy()     # the annotator's slice
        panel.mode.setCurrentIndex(panel.mode.findData(mode))
        panel.propagate_btn.click()
        wait(lambda: not panel.busy)
        settle()
        out = np.asarray(viewer.layers["colin27 T1 promptseg"].data)
        dice = np.nanmean([[np.nan if d is None else d for d in per_class_dice(out[z], truth[z], 3)]
                           for z in range(len(vol)) if z != 10], axis=0)
        print(f"  {mode}: {panel.note.text()}; mean Dice per class over the other 19 slices vs the atlas: "
              + ", ".join(f"{n} {100 * d:.1f}" for n, d in zip(names, dice)) + f"; mean {100 * np.mean(dice):.1f}")
    viewer.dims.set_current_step(0, 16)
    w.scroll_to(panel)
    shot(viewer, "volume_propagate.png")
    viewer.close()


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    scenes = sys.argv[1:] or ["propose", "project", "retrain", "volume", "propagate"]
    root = Path(tempfile.mkdtemp(prefix="promptseg-shots-"))
    if "propose" in scenes:
        scene_propose()
    if "project" in scenes:
        scene_project(root)
    if "retrain" in scenes:
        scene_retrain(root)
    if "volume" in scenes:
        scene_volume()
    if "propagate" in scenes:
        scene_propagate()
    sys.exit(0)


if __name__ == "__main__":
    main()
