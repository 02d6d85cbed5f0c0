"""Screenshots of the PromptSeg widget for docs/ (run under Xvfb: xvfb-run -a python ...)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

OUT = Path(__file__).resolve().parents[1] / "docs" / "screenshots"


def wait(pred, timeout=300):
    t0 = time.time()
    while not pred() and time.time() - t0 < timeout:
        QApplication.processEvents()
        time.sleep(0.05)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for sample, prompt in [("brain", "thalamus; putamen; caudate; cerebellum"), ("nuclei", "nucleus")]:
        viewer = napari.Viewer()
        viewer.window.resize(1400, 900)
        viewer.open_sample("napari-promptseg", sample)
        for ly in viewer.layers:
            if ly.name.endswith("ground truth"):
                ly.visible = False
        _, w = viewer.window.add_plugin_dock_widget("napari-promptseg", "PromptSeg")
        w.prompt_edit.setText(prompt)
        w.propose_btn.click()
        wait(lambda: any(ly.name.endswith("promptseg") for ly in viewer.layers))
        wait(lambda: w.propose_btn.isEnabled())
        for _ in range(20):
            QApplication.processEvents()
            time.sleep(0.05)
        viewer.screenshot(str(OUT / f"propose_{sample}.png"), canvas_only=False)
        print(sample, w.status.text(), w.presence.text())
        viewer.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
