"""Box and click -> mask latency as the annotator sees it in the dock (from the prompt layer's
change to the mask on screen: worker start, decode, drawing), against the bare Predictor call
on the same prompts in the same run. With ``--zoom`` a box's first mask is the whole image's
answer; ``dock_zoomed_box_s`` is when the zoomed one replaced it. Run under Xvfb:

    xvfb-run -a python scripts/dock_box_latency.py MONUSEG_DIR OUT.json [--zoom]
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np


def main(data: Path, out: Path, zoom: bool, image: str = "TCGA-18-5592-01Z-00-DX1", n: int = 10) -> dict:
    import imageio.v3 as iio
    import napari
    from qtpy.QtCore import QEventLoop, QTimer
    from skimage.measure import label, regionprops

    img = np.ascontiguousarray(iio.imread(data / "images" / f"{image}.png")[:256, :256, :3])
    gold = label(iio.imread(data / "masks" / f"{image}.png")[:256, :256] > 0)
    regions = [r for r in sorted(regionprops(gold), key=lambda r: -r.area) if r.solidity >= 0.9][:n]
    boxes = [(r.bbox[0] - 2, r.bbox[1] - 2, r.bbox[2] + 1, r.bbox[3] + 1) for r in regions]
    clicks = [tuple(int(v) for v in r.coords[np.argmin(((r.coords - r.centroid) ** 2).sum(1))]) for r in regions[:3]]

    viewer = napari.Viewer()
    _, w = viewer.window.add_plugin_dock_widget("napari-promptseg", "PromptSeg")
    viewer.add_image(img, name="he", rgb=True)
    w.image_combo.setCurrentText("he")
    rp = w.refine_panel
    rp.zoom.setChecked(zoom)

    def idle() -> None:
        """Wait in Qt's event loop, as napari does between events (the GUI thread then holds no
        lock the worker needs)."""
        loop, timer = QEventLoop(), QTimer()
        timer.timeout.connect(lambda: loop.quit() if rp._worker is None and not rp._again else None)
        timer.start(5)
        loop.exec_()
        timer.stop()

    rp.layers_btn.click()             # embeds the image for boxes (the warm-up)
    idle()
    rp.latencies.clear()
    rp.worker_seconds.clear()
    rp.zoom_latencies.clear()
    for b in boxes:
        viewer.layers["he box"].add_rectangles(np.array([[b[0], b[1]], [b[2], b[3]]], float))
        idle()
        viewer.layers["he box"].data = []
        idle()
    dock_boxes, dock_zoomed = list(rp.latencies), list(rp.zoom_latencies)
    for c in clicks:
        viewer.layers["he clicks +"].add([list(c)])
        idle()
        viewer.layers["he clicks +"].data = np.zeros((0, 2))
        idle()
    dock_clicks = rp.latencies[len(dock_boxes):]
    worker_boxes, worker_clicks = rp.worker_seconds[:len(dock_boxes)], rp.worker_seconds[len(dock_boxes):]
    pred = w.session.loaded_predictor
    pred.set_image(img)
    bare_boxes, bare_clicks = [], []
    for b in boxes:   # moved by a pixel, so that a zoom crop is not the dock's cached one
        t = time.perf_counter()
        pred.predict_boxes([tuple(v + 1 for v in b)], zoom=zoom)
        bare_boxes.append(time.perf_counter() - t)
    for c in clicks:
        t = time.perf_counter()
        pred.predict_points([tuple(v + 1 for v in c)])
        bare_clicks.append(time.perf_counter() - t)
    viewer.close()
    med = lambda xs: float(np.median(xs))   # noqa: E731
    res = {"image": image, "zoom": zoom, "boxes": len(boxes), "clicks": len(clicks),
           "dock_box_s": dock_boxes, "dock_zoomed_box_s": dock_zoomed, "bare_box_s": bare_boxes, "dock_click_s": dock_clicks, "bare_click_s": bare_clicks,
           "worker_box_s": worker_boxes, "worker_click_s": worker_clicks,
           "p50_dock_box_s": med(dock_boxes), "p50_dock_zoomed_box_s": med(dock_zoomed) if dock_zoomed else None, "p50_worker_box_s": med(worker_boxes), "p50_bare_box_s": med(bare_boxes),
           "p50_dock_click_s": med(dock_clicks), "p50_worker_click_s": med(worker_clicks),
           "p50_bare_click_s": med(bare_clicks),
           "box_ratio_dock_over_bare": med(dock_boxes) / med(bare_boxes)}
    out.write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    r = main(Path(sys.argv[1]), Path(sys.argv[2]), "--zoom" in sys.argv[3:])
    print(json.dumps({k: v for k, v in r.items() if not isinstance(v, list)}, indent=1))
