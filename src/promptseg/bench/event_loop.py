"""`promptseg bench event-loop`: event-loop latency of napari with the PromptSeg dock, idle vs
while a round trains (run it under Xvfb: ``xvfb-run -a promptseg bench event-loop --out DIR``).

A QTimer with a period of ``TICK_MS`` runs on napari's GUI thread; each tick records how late
it fired (actual gap minus the period). Phase 1: the viewer idle (an image and the dock open). Phase 2: the dock's
Retrain button starts a real ``promptseg train`` child process on a small project (the bundled
nuclei sample as gold labels); the dock reads its JSON lines, updates the progress bar and
redraws the live plot while the timer keeps measuring; after ``--train-seconds`` the round is
cancelled with the Cancel button. Writes ``DIR/event_loop.json``.

With ``--first-use``: from opening the dock to the first mask instead. napari shows the nuclei
sample, the dock opens (its model loads and the image is embedded in workers), and
``--propose-after`` seconds later "nucleus" is proposed; the timer runs throughout. Reports
the largest gap, how long the dock's opening call took, and the seconds from the click on
Propose to the mask, and as a baseline the same timer on the viewer before the dock opens.
``--preload`` imports the model's modules before napari's window opens,
as ``promptseg gui`` does. ``--trace-gaps`` adds each gap over the target with the GUI thread's
sampled stacks, the other threads' and the GUI thread's own CPU time in it
(``promptseg.napari.gap_trace``). Writes ``DIR/first_use.json``. The Qt side lives in
``promptseg.napari.event_loop_probe``; this module holds the project, the statistics and the report.
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def lateness_stats(late_s: list[float]) -> dict:
    """Percentiles of timer lateness (seconds in, milliseconds out)."""
    a = np.asarray(late_s) * 1000
    if a.size == 0:
        return {"ticks": 0}
    return {"ticks": int(a.size), "p50_ms": round(float(np.percentile(a, 50)), 2),
            "p95_ms": round(float(np.percentile(a, 95)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2),
            "max_ms": round(float(a.max()), 2), "mean_ms": round(float(a.mean()), 2)}


def make_project(root: Path, model: str, n_images: int) -> Path:
    """A project with ``n_images`` gold-labelled nuclei tiles and an active model."""
    from ..inference.predictor import DEFAULT_CHECKPOINT
    from ..io import load_sample
    from ..model.checkpoint import save_checkpoint
    from ..model.segmenter import ModelConfig, PromptSegModel
    from ..project import Project

    sample = load_sample("nuclei")
    with Project.create(root / "project") as p:
        src = DEFAULT_CHECKPOINT
        if model == "tiny":
            src = root / "tiny"
            save_checkpoint(PromptSegModel(ModelConfig.tiny()), src)
        p.register_model(src, config={"bench": model})
        for i in range(n_images):
            item = sample.items[i % len(sample.items)]
            p.add_image(item.image, name=f"{item.name}_{i}")
            p.save_label(f"{item.name}_{i}", (item.mask > 0).astype(np.uint8), ["nucleus"], "gold")
    return root / "project"


def run(out: Path, idle_s: float, train_s: float, model: str, n_images: int, steps: int) -> dict:
    """Measure (under a display) and write ``out/event_loop.json``."""
    from ..napari.event_loop_probe import TICK_MS, measure

    out.mkdir(parents=True, exist_ok=True)
    project = make_project(Path(tempfile.mkdtemp(prefix="promptseg-bench-")), model, n_images)
    m = measure(project, idle_s, train_s, steps)
    samples, at, panel_events = m["samples"], m["at"], m["events"]
    events = [e.get("event") for e in panel_events]
    steps_done = max([e["step"] for e in panel_events if e.get("event") == "step"], default=0)
    result = {
        "what": f"napari event-loop lateness of a {TICK_MS} ms QTimer (ms): idle vs while `promptseg train` runs "
                "as a child process started from the dock",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "qt_platform": os.environ.get("QT_QPA_PLATFORM", "xcb (Xvfb when run under xvfb-run)")},
        "settings": {"tick_ms": TICK_MS, "idle_s": idle_s, "train_s": train_s, "model": model,
                     "labelled_images": n_images, "max_steps": steps},
        "idle": lateness_stats(samples["idle"]),
        "training": lateness_stats(samples["training"]),
        "worst_training_ticks": [{"at_s": round(at["training"][i], 2), "late_ms": round(samples["training"][i] * 1000, 1)}
                                 for i in np.argsort(samples["training"])[::-1][:5]],
        "round": {"events": {k: events.count(k) for k in sorted(set(events))}, "steps_done": int(steps_done),
                  "cancelled_by_bench": m["cancelled"], "seconds": round(m["train_wall"], 1),
                  "plot_points": m["plot_points"],
                  "error": next((e.get("message") for e in panel_events if e.get("event") == "error"), None)},
        "target_p95_ms": 50,
    }
    # Only a round that really trained (steps arrived) makes the training numbers meaningful.
    result["valid"] = bool(steps_done > 0)
    result["pass"] = bool(result["valid"] and result["training"].get("p95_ms", 1e9) <= 50)
    (out / "event_loop.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def run_first_use(out: Path, propose_after_s: float, preload: bool = False, trace_gaps: bool = False) -> dict:
    """Measure the first use (under a display) and write ``out/first_use.json``."""
    from ..napari.event_loop_probe import TICK_MS, measure_first_use

    out.mkdir(parents=True, exist_ok=True)
    m = measure_first_use(propose_after_s, preload, trace_gaps=trace_gaps)
    result = {
        "what": f"napari event-loop lateness of a {TICK_MS} ms QTimer (ms) from opening the dock to the first "
                "mask on the nuclei sample, and the seconds from the click on Propose to the mask",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average": [round(v, 2) for v in os.getloadavg()]},
        "settings": {"tick_ms": TICK_MS, "propose_after_s": propose_after_s, "preload": preload},
        "dock_open_ms": round(m["dock_open_s"] * 1000, 1),
        "dock_open_gui_cpu_ms": round(m["dock_open_cpu_s"] * 1000, 1),   # the GUI thread's own CPU time in it
        "viewer_only": lateness_stats(m["samples"]["viewer_only"]),
        "first_use": lateness_stats(m["samples"]["first_use"]),
        "worst_ticks": [{"at_s": round(m["at"]["first_use"][i], 2), "late_ms": round(m["samples"]["first_use"][i] * 1000, 1)}
                        for i in np.argsort(m["samples"]["first_use"])[::-1][:5]],
        "first_mask_s": round(m["first_mask_s"], 2),
        "marks_s_after_dock_open": m["marks"],
        "embedded_before_click": m["embedded_before_click"],
        "gaps": m["gaps"],
        "valid": m["mask_found"],
        "status": m["status"],
        "target_max_gap_ms": 100, "target_first_mask_s": 5,
    }
    (out / "first_use.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
