"""Refine section: point and box prompts from napari layers, and exemplars from accepted labels.

Positive points come from the Points layer ``<image> points +``, negative ones from
``<image> points −``; the box is the last rectangle of the Shapes layer ``<image> box``.
"use exemplars" pools image features under the project's accepted labels of each prompted
class (``Predictor.exemplar_vector``). Refining re-runs only the decoder on the cached
embedding of the image (exemplar images are embedded once, then cached).
"""
from __future__ import annotations

import time

import numpy as np
from qtpy.QtWidgets import QCheckBox, QGroupBox, QLabel, QPushButton, QSpinBox, QVBoxLayout

from ..workflow.exemplars import exemplar_sources
from ..workflow.scoring import expert_disagreement, mean_entropy
from .layers import show_labels
from .rows import hrow
from .state import Proposal
from .workers import start_worker

POS, NEG, BOX = "points +", "points −", "box"


def prompt_layer_names(image: str) -> tuple[str, str, str]:
    return f"{image} {POS}", f"{image} {NEG}", f"{image} {BOX}"


def spatial_prompts(viewer, image: str) -> tuple[np.ndarray | None, np.ndarray | None, tuple | None]:
    """(points (P, 2) row/col, labels (P,) 1/0, box (r0, c0, r1, c1)) from the image's layers."""
    pos, neg, box = prompt_layer_names(image)
    pts, labs = [], []
    for name, lab in ((pos, 1), (neg, 0)):
        if name in viewer.layers:
            data = np.asarray(viewer.layers[name].data, np.float32).reshape(-1, viewer.layers[name].ndim)
            pts.append(data[:, -2:])
            labs.append(np.full(len(data), lab, np.int64))
    points = np.concatenate(pts) if pts else None
    labels = np.concatenate(labs) if labs else None
    if points is not None and len(points) == 0:
        points = labels = None
    rect = None
    if box in viewer.layers and len(viewer.layers[box].data):
        corners = np.asarray(viewer.layers[box].data[-1], np.float32)[:, -2:]
        (r0, c0), (r1, c1) = corners.min(0), corners.max(0)
        rect = (float(r0), float(c0), float(r1), float(c1))
    return points, labels, rect


class RefinePanel(QGroupBox):
    def __init__(self, owner, session) -> None:
        super().__init__("Refine")
        self.owner = owner          # the dock: viewer, proposal on screen
        self.session = session      # workflow/session.py: the project, model, Predictor, exemplars
        self._worker = None
        self.layers_btn = QPushButton("Point / box layers")
        self.layers_btn.setToolTip("Add Points layers for positive (+) and negative (−) clicks and a Shapes "
                                   "layer for a box, for the current image")
        self.exemplars = QCheckBox("use exemplars")
        self.exemplars.setToolTip("Also prompt with image features under the project's accepted labels of each class")
        self.max_exemplars = QSpinBox()
        self.max_exemplars.setRange(1, 16)
        self.max_exemplars.setValue(4)
        self.max_exemplars.setToolTip("At most this many accepted labels per class (newest first)")
        self.refine_btn = QPushButton("Refine")
        self.info = QLabel("")
        self.info.setWordWrap(True)
        self.max_exemplars.setPrefix("max ")
        lay = QVBoxLayout(self)
        lay.addWidget(hrow(self.layers_btn, self.refine_btn))
        lay.addWidget(hrow(self.exemplars, self.max_exemplars))
        lay.addWidget(self.info)
        self.layers_btn.clicked.connect(self.add_prompt_layers)
        self.refine_btn.clicked.connect(self.refine)

    def add_prompt_layers(self) -> None:
        w = self.owner
        name = w.current.image if w.current is not None else w.image_combo.currentText()
        if not name or name not in w.viewer.layers:
            self.info.setText("⚠ open an image first")
            return
        image_layer = w.viewer.layers[name]
        scale = image_layer.scale[-2:]
        pos, neg, box = prompt_layer_names(name)
        if pos not in w.viewer.layers:
            w.viewer.add_points(np.zeros((0, 2)), name=pos, face_color="#3cb44b", size=6, scale=scale)
        if neg not in w.viewer.layers:
            w.viewer.add_points(np.zeros((0, 2)), name=neg, face_color="#e6194b", size=6, scale=scale)
        if box not in w.viewer.layers:
            w.viewer.add_shapes(name=box, edge_color="#ffe119", face_color="transparent", edge_width=2, scale=scale)
        w.viewer.layers[box].mode = "add_rectangle"
        w.viewer.layers.selection.active = w.viewer.layers[pos]
        w.viewer.layers[pos].mode = "add"
        self.info.setText(f"Click inside the object on '{pos}', outside on '{neg}', or draw a box on '{box}', "
                          "then Refine.")

    # -- refine ------------------------------------------------------------------------
    def refine(self) -> None:
        w = self.owner
        p = w.current
        if self._worker is not None:
            return
        predictor = self.session.loaded_predictor
        if p is None or p.layer not in w.viewer.layers or predictor is None:
            self.info.setText("⚠ propose on an image first; Refine re-runs the decoder on its embedding")
            return
        if w.unsaved_edits() is not None:
            self.info.setText("⚠ the layer has edits: Accept them first (Refine would replace the layer)")
            return
        points, labels, box = spatial_prompts(w.viewer, p.image)
        use_ex = self.exemplars.isChecked()
        sources = exemplar_sources(self.session.project, p.prompts, p.image, self.max_exemplars.value()) if use_ex else {}
        if points is None and box is None and not any(sources.values()):
            self.info.setText("⚠ nothing to refine with: add points or a box (Point / box layers)"
                              + (", or accept labels of these classes to use as exemplars" if use_ex else ""))
            return
        session, image, tau = self.session, p.image_array, p.tau

        def job():
            try:
                t0 = time.perf_counter()
                with session.lock:
                    ex = session.exemplars.vectors(predictor, session.project, sources) if sources else None
                    predictor.set_image(image)           # cache hit: no encoder run
                    r = predictor.predict(p.prompts, threshold=tau, points=points, point_labels=labels, box=box,
                                          exemplars=ex or None, grounding=True)
                scores = (mean_entropy(r.probs), expert_disagreement(r.probs, r.grounding, tau))
                return r, scores, time.perf_counter() - t0, ex
            except (ValueError, RuntimeError, OSError) as exc:
                return str(exc)

        self.refine_btn.setEnabled(False)
        self.info.setText("Refining …")
        self._worker = start_worker(job, self._done, on_return=lambda res: self._show(p, res, points, box))

    def _done(self) -> None:
        self._worker = None
        self.refine_btn.setEnabled(True)

    def _show(self, p: Proposal, res, points, box) -> None:
        w = self.owner
        if isinstance(res, str):
            self.info.setText(f"⚠ {res}")
            return
        r, (uncertainty, disagreement), seconds, ex = res
        if p is not w.current or p.layer not in w.viewer.layers:
            self.info.setText("⚠ the image changed while refining; result dropped")
            return
        show_labels(w.viewer, p.layer, r.labels, r.prompts, r.presence, metadata={"refined": True},
                    known_colors=w.project_panel.class_colors())
        p.probs, p.presence, p.fixed = r.probs, r.presence, None
        p.refine = {"points": None if points is None else points.tolist(), "box": box,
                    "exemplars": {k: len(v) for k, v in (ex or {}).items()}}
        what = []
        if points is not None:
            what.append(f"{len(points)} point(s)")
        if box is not None:
            what.append("a box")
        if ex:
            what.append(", ".join(f"{len(v)} exemplar(s) of {k}" for k, v in ex.items()))
        self.info.setText(f"Refined with {', '.join(what) or 'nothing'} in {seconds:.2f} s "
                          f"(decoder only; uncertainty {uncertainty:.3f}).")
        w.presence.setText("  ".join(f"■ {c}: {v:.2f}" for c, v in zip(r.prompts, r.presence)))
        w.project_panel.on_proposed(p, uncertainty, w.viewer.layers[p.image] if p.image in w.viewer.layers else None,
                                    disagreement)
