"""Screenshots of the dock at 1600×1000, one per tab, for docs/user-guide.md ("The dock").

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/dock_screenshots.py

first use (no image open), Refine after a proposal on the nuclei sample, Project with a
project of nuclei tiles, Train while a round runs (a test-size model, so steps come quickly;
the round is cancelled afterwards), and 3-D.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import napari
from screenshots import settle, wait   # scripts/screenshots.py: run the event loop until done

OUT = Path(__file__).resolve().parents[1] / "docs" / "screenshots"


def shot(viewer, widget, tab: str | None, name: str) -> None:
    if tab is not None:
        widget.tabs.setCurrentIndex([widget.tabs.tabText(i) for i in range(widget.tabs.count())].index(tab))
    settle()
    viewer.screenshot(str(OUT / name), canvas_only=False)
    print("wrote", OUT / name)


def main() -> None:
    from promptseg.bench.event_loop import make_project

    OUT.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer()
    viewer.window._qt_window.resize(1600, 1000)
    _, widget = viewer.window.add_plugin_dock_widget("napari-promptseg", "PromptSeg")
    shot(viewer, widget, None, "dock_first_use.png")

    viewer.open_sample("napari-promptseg", "nuclei")
    wait(lambda: widget.state.loaded and not widget.embedder.busy)
    widget.prompt_edit.setText("nucleus")
    widget.propose_btn.click()
    wait(lambda: "nuclei_00 promptseg" in viewer.layers and viewer.layers["nuclei_00 promptseg"].visible and not widget.proposing)
    shot(viewer, widget, "Refine", "dock_refine.png")

    project = make_project(Path(tempfile.mkdtemp(prefix="promptseg-shots-")), "tiny", 3)
    panel = widget.project_panel
    panel.path_edit.setText(str(project))
    panel.open_btn.click()
    shot(viewer, widget, "Project", "dock_project.png")

    panel.steps.setValue(400)
    panel.retrain_btn.click()
    wait(lambda: sum(e.get("event") == "step" for e in panel.events) >= 8 or panel.proc is None)
    shot(viewer, widget, "Train", "dock_train_round.png")
    if panel.proc is not None:
        panel.cancel_btn.click()
        wait(lambda: panel.proc is None)
    shot(viewer, widget, "3-D", "dock_3d.png")
    viewer.close()


if __name__ == "__main__":
    main()
