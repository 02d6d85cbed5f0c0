"""Screenshots of the Project, Accept and Retrain sections, and of mask edges, for docs/
(run under Xvfb: xvfb-run -a python scripts/screenshots_rounds.py [scene ...]).

folder:   a mistyped project folder: the panel asks before creating anything.
round:    a 1-step round on the nuclei sample (3 gold labels), caught while it embeds the
          unlabelled images, and again when it is done.
edges:    the same view of the nuclei sample's proposal by two checkpoints, side by side, with
          the masks drawn as outlines (``--before DIR`` and ``--after DIR``; each defaults to
          the shipped checkpoint).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from qtpy.QtWidgets import QApplication

from screenshots import OUT, propose, settle, viewer_with_dock, wait


def grab(widget, name: str) -> None:
    settle()
    widget.grab().save(str(OUT / name))
    print("wrote", OUT / name)


def nuclei_project(root: Path) -> Path:
    from promptseg.io import load_sample
    from promptseg.project import Project

    sample = load_sample("nuclei")
    with Project.create(root / "nuclei-project") as p:
        for item in sample.items:
            p.add_image(item.image, name=item.name)
        for item in sample.items[:3]:
            p.save_label(item.name, (item.mask > 0).astype(np.uint8), ["nucleus"], "gold")
    return root / "nuclei-project"


def scene_folder(root: Path) -> None:
    viewer, w = viewer_with_dock()
    panel = w.project_panel
    panel.path_edit.setText(str(root / "projcets" / "nuclei"))
    panel.open_btn.click()
    grab(panel, "project_confirm.png")
    viewer.close()


def scene_round(root: Path) -> None:
    viewer, w = viewer_with_dock()
    panel = w.project_panel
    panel.path_edit.setText(str(nuclei_project(root)))
    panel.open_btn.click()
    panel.steps.setValue(1)
    taken = []
    on_event = panel._on_event

    def record(ev: dict) -> None:
        on_event(ev)
        if ev["event"] == "embed" and ev["group"] == "unlabelled" and not taken:
            taken.append(ev)
            grab(panel.retrain_box, "round_embedding.png")
    panel._on_event = record
    panel.retrain_btn.click()
    wait(lambda: panel.proc is None, timeout=1800)
    print(" ", panel.retrain_msg.text())
    grab(panel.retrain_box, "round_done.png")
    grab(panel, "project_panel.png")
    viewer.close()


def edges_view(checkpoint: str | None) -> np.ndarray:
    viewer, w = viewer_with_dock()
    if checkpoint:
        w.checkpoint = checkpoint
    viewer.open_sample("napari-promptseg", "nuclei")
    for ly in viewer.layers:
        if ly.name.endswith("ground truth"):
            ly.visible = False
    name = [ly.name for ly in viewer.layers if not ly.name.endswith("truth")][0]
    w.image_combo.setCurrentText(name)
    propose(w, "nucleus")
    labels = viewer.layers[f"{name} promptseg"]
    labels.contour = 1
    viewer.camera.center = (64, 64)
    viewer.camera.zoom = 7.0
    settle()
    img = viewer.screenshot(canvas_only=True)
    viewer.close()
    return np.asarray(img)


def scene_edges(before: str | None, after: str | None = None) -> None:
    import imageio.v3 as iio

    left, right = edges_view(before), edges_view(after)
    h = min(left.shape[0], right.shape[0])
    gap = np.full((h, 8, left.shape[2]), 255, np.uint8)
    iio.imwrite(OUT / "edges_before_after.png", np.concatenate([left[:h], gap, right[:h]], axis=1))
    print("wrote", OUT / "edges_before_after.png")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("scenes", nargs="*", default=["folder", "round", "edges"])
    ap.add_argument("--before", default=None, help="the older checkpoint folder, for the edges scene")
    ap.add_argument("--after", default=None, help="the newer checkpoint folder (default: the shipped one)")
    a = ap.parse_args()
    QApplication.instance()
    with tempfile.TemporaryDirectory() as tmp:
        for scene in a.scenes:
            if scene == "edges":
                scene_edges(a.before, a.after)
            else:
                {"folder": scene_folder, "round": scene_round}[scene](Path(tmp))


if __name__ == "__main__":
    main()
