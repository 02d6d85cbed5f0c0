"""PromptSeg dock widget: type class prompts, get a Labels layer proposal.

Model loading, image embedding and decoding run in a worker thread, so the viewer stays
responsive; the threshold slider re-merges cached probabilities without re-running anything.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from napari.qt.threading import create_worker
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPushButton,
                            QSlider, QVBoxLayout, QWidget)

from .layers import show_labels
from .project_panel import ProjectPanel

if TYPE_CHECKING:
    import napari

HELP = ("Type one or more class names separated by ';' (e.g. 'nucleus' or "
        "'thalamus; putamen') and press Enter or Propose.")


@dataclass
class _Failed:
    message: str


class PromptSegWidget(QWidget):
    def __init__(self, napari_viewer: "napari.viewer.Viewer", checkpoint: str | None = None):
        super().__init__()
        self.viewer = napari_viewer
        self.checkpoint = checkpoint
        self._predictor = None
        self._predictor_device = None
        self._last = None          # (labels layer, Prediction, image name, image layer)
        self._worker = None
        self.setObjectName("PromptSegWidget")

        self.image_combo = QComboBox()
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", "cpu", "cuda", "mps"])
        self.prompt_edit = QLineEdit()
        self.prompt_edit.setPlaceholderText("nucleus   or   thalamus; putamen")
        self.prompt_edit.setToolTip(HELP)
        self.propose_btn = QPushButton("Propose")
        self.threshold = QSlider(Qt.Horizontal)
        self.threshold.setRange(5, 95)
        self.threshold.setValue(50)
        self.threshold_label = QLabel("0.50")
        self.status = QLabel("Load an image, type a prompt.")
        self.status.setWordWrap(True)
        self.presence = QLabel("")
        self.presence.setWordWrap(True)

        box = QGroupBox("Prompt")
        form = QFormLayout(box)
        form.addRow("Image", self.image_combo)
        form.addRow("Classes", self.prompt_edit)
        form.addRow(self.propose_btn)
        thr = QWidget()
        thr_lay = QHBoxLayout(thr)
        thr_lay.setContentsMargins(0, 0, 0, 0)
        thr_lay.addWidget(self.threshold, 1)
        thr_lay.addWidget(self.threshold_label)
        form.addRow("Threshold", thr)
        form.addRow("Device", self.device_combo)
        lay = QVBoxLayout(self)
        self.model_version: int | None = None
        self.project_panel = ProjectPanel(self)
        lay.addWidget(box)
        lay.addWidget(self.presence)
        lay.addWidget(self.status)
        lay.addWidget(self.project_panel)
        lay.addStretch(1)

        self.propose_btn.clicked.connect(self.propose)
        self.prompt_edit.returnPressed.connect(self.propose)
        self.threshold.valueChanged.connect(self._on_threshold)
        for ev in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            ev.connect(self._refresh_images)
        self._refresh_images()

    # -- layers ------------------------------------------------------------------------
    def _image_layers(self):
        from napari.layers import Image

        return [ly for ly in self.viewer.layers if isinstance(ly, Image)]

    def _refresh_images(self, *_):
        current = self.image_combo.currentText()
        names = [ly.name for ly in self._image_layers()]
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems(names)
        if current in names:
            self.image_combo.setCurrentText(current)
        elif names:
            self.image_combo.setCurrentIndex(len(names) - 1)
        self.image_combo.blockSignals(False)

    def _current_image(self) -> tuple[str, np.ndarray, object]:
        name = self.image_combo.currentText()
        if not name or name not in self.viewer.layers:
            raise ValueError("open an image first (File > Open, or File > Open Sample > PromptSeg)")
        layer = self.viewer.layers[name]
        ndim = np.ndim(layer.data) - (1 if layer.rgb else 0)
        if ndim not in (2, 3):
            raise ValueError(f"layer {name!r} has {ndim} dimensions; PromptSeg works on 2-D images "
                             "and on the current slice of a 3-D volume")
        img = self._image_for(layer)
        return name, img, layer

    # -- actions -----------------------------------------------------------------------
    def _set_busy(self, busy: bool, msg: str = "") -> None:
        self.propose_btn.setEnabled(not busy)
        if msg:
            self.status.setText(msg)

    def propose(self) -> None:
        if self._worker is not None:
            return
        text = self.prompt_edit.text()
        try:
            from ..model.text import split_prompts

            prompts = split_prompts(text)
            name, img, layer = self._current_image()
        except ValueError as exc:
            self.status.setText(f"⚠ {exc}")
            return
        device = self.device_combo.currentText()
        # Heavy imports on the main thread, once; the worker then only computes.
        from ..predictor import Predictor, preload_modules

        preload_modules()
        self._set_busy(True, f"Proposing {', '.join(prompts)} on {name} …")
        t0 = time.perf_counter()

        def job():
            # Errors come back as values: the widget shows them; nothing is raised into Qt.
            try:
                if self._predictor is None or self._predictor_device != device:
                    self._predictor = Predictor.load(self.checkpoint, device=device)
                    self._predictor_device = device
                self._predictor.set_image(img)
                return self._predictor.predict(prompts, threshold=self.threshold.value() / 100)
            except (ValueError, RuntimeError, OSError) as exc:
                return _Failed(str(exc))  # not the exception itself: superqt re-raises those

        worker = create_worker(job)
        worker.returned.connect(lambda r: self._show(name, layer, r, time.perf_counter() - t0))
        worker.finished.connect(self._done)
        self._worker = worker
        worker.start()

    def _done(self) -> None:
        self._worker = None
        self._set_busy(False)

    def _show(self, name: str, image_layer, r, seconds: float) -> None:
        if isinstance(r, _Failed):
            self.status.setText(f"⚠ {r.message}")
            return
        out = f"{name} promptseg"
        show_labels(self.viewer, out, r.labels, r.prompts, r.presence,
                    scale=image_layer.scale[-2:] if r.labels.ndim == 2 else None,
                    metadata={"image": name, "prompt": "; ".join(r.prompts),
                              "model": self._predictor.info.get("version")})
        self._last = (out, r, name, image_layer)
        self._last_image = self._image_for(image_layer)
        self.project_panel.note_proposal(name)
        self.presence.setText("  ".join(f"■ {c}: {p:.2f}" for c, p in zip(r.prompts, r.presence)))
        self.status.setText(f"Proposed {len(r.prompts)} class(es) on {name} in {seconds:.1f} s.")

    # -- used by the project panel --------------------------------------------------------
    def _image_for(self, layer) -> np.ndarray:
        data = np.asarray(layer.data)
        if data.ndim == 3 and not layer.rgb:
            z = int(self.viewer.dims.current_step[0])
            data = data[min(max(z, 0), data.shape[0] - 1)]
        return data

    def last_proposal(self):
        """(labels layer name, image name, Prediction, image array) of the latest proposal."""
        if self._last is None:
            return None
        out, r, name, _ = self._last
        return out, name, r, self._last_image

    def proposal_labels(self) -> np.ndarray:
        _, r = self._last[:2]
        tau = self.threshold.value() / 100
        return np.where(r.probs.max(0) >= tau, r.probs.argmax(0) + 1, 0).astype(np.int32)

    def use_checkpoint(self, path: str, version: int | None) -> None:
        """Hot-load a model version: the next proposal uses it (embeddings cached per model)."""
        self.checkpoint = path
        self.model_version = version
        self._predictor = None

    def _on_threshold(self, value: int) -> None:
        tau = value / 100
        self.threshold_label.setText(f"{tau:.2f}")
        if self._last is None or self._last[0] not in self.viewer.layers:
            return
        name, r = self._last[:2]
        self.viewer.layers[name].data = self.proposal_labels()
