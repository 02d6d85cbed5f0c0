"""PromptSeg dock widget: type class prompts, get a Labels layer proposal.

Model loading, image embedding and decoding run in a worker thread, so the viewer stays
responsive; the threshold slider re-merges cached probabilities without re-running anything.
"""
from __future__ import annotations

import sys
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtCore import QEvent, Qt
from qtpy.QtWidgets import (QComboBox, QFormLayout, QFrame, QGroupBox, QLabel, QLineEdit, QPushButton, QScrollArea,
                            QSlider, QVBoxLayout, QWidget)

from ..workflow.session import AnnotationSession
from ..inference.vocabulary import presence_text, unknown_message
from .background import BatchProposer, Prefetcher
from .fast_mode import FastModeBox
from .layers import show_labels
from .project_panel import ProjectPanel
from .prompt_assist import SegmentCompleter, completion_words
from .refine import RefinePanel
from .rows import hrow
from .shortcuts import bind as bind_shortcuts
from .shortcuts import help_text
from .state import Proposal
from .volume_panel import VolumePanel
from .workers import start_worker

if TYPE_CHECKING:
    import napari

HELP = ("Type one or more class names separated by ';' (e.g. 'nucleus' or "
        "'thalamus; putamen') and press Enter or Propose (Shift+P in the viewer).")


def preload() -> None:
    """Heavy imports on the main thread, once; worker threads then only compute."""
    from ..inference.predictor import preload_modules

    preload_modules()


@dataclass
class _Failed:
    message: str


class PromptSegWidget(QWidget):
    def __init__(self, napari_viewer: "napari.viewer.Viewer", checkpoint: str | None = None):
        super().__init__()
        self.viewer = napari_viewer
        # the project, the model in use and its Predictor, shared with the panels and the
        # background work (worker threads: every set_image + predict pair under session.lock)
        self.session = AnnotationSession(checkpoint)
        self.prefetcher = Prefetcher(self, self.session)
        self.batch = BatchProposer(self, self.session)
        self.current: Proposal | None = None   # the proposal on screen
        self._worker = None
        self.setObjectName("PromptSegWidget")

        self.image_combo = QComboBox()
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", "cpu", "cuda", "mps"])
        self.fast_mode = FastModeBox(self.device_combo)
        self.prompt_edit = QLineEdit()
        self.prompt_edit.setPlaceholderText("nucleus   or   thalamus; putamen")
        self.prompt_edit.setToolTip(HELP)
        self.propose_btn = QPushButton("Propose")
        self.completer = SegmentCompleter(self.prompt_edit)
        self.history: list[str] = []
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
        form.addRow("Threshold", hrow(self.threshold, self.threshold_label, stretch=self.threshold))
        form.addRow("Device", hrow(self.device_combo, self.fast_mode, stretch=self.device_combo))
        self.project_panel = ProjectPanel(self, self.session)
        self.project_panel.model_changed.connect(self.use_checkpoint)
        self.refine_panel = RefinePanel(self, self.session)
        self.volume_panel = VolumePanel(self, self.session)
        self.keys_help = QLabel(help_text())
        self.keys_help.setWordWrap(True)
        self.keys_help.setStyleSheet("color: gray")
        # Sections in the order of the work, in a scroll area (the dock can be short).
        inner = QWidget()
        lay = QVBoxLayout(inner)
        lay.setContentsMargins(2, 2, 2, 2)
        for section in (self.project_panel, box, self.presence, self.status, self.refine_panel,
                        self.volume_panel, self.project_panel.accept_box, self.project_panel.retrain_box, self.keys_help):
            lay.addWidget(section)
        lay.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.NoFrame)
        scroll.setWidget(inner)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self._scroll = scroll
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

        self.propose_btn.clicked.connect(self.propose)
        self.prompt_edit.returnPressed.connect(self.propose)
        self.threshold.valueChanged.connect(self._on_threshold)
        for ev in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            ev.connect(self._refresh_images)
        self._refresh_images()
        # Unsaved edits become a draft when their layer goes away (viewer.close() removes all
        # layers first) or the window closes.
        self.viewer.layers.events.removing.connect(self._on_removing)
        bind_shortcuts(self)
        self._watched_window = None

    @property
    def model_version(self) -> int | None:
        return self.session.model_version

    @property
    def proposing(self) -> bool:
        """A Propose is running (other panels wait for it)."""
        return self._worker is not None

    def scroll_to(self, section) -> None:
        """Scroll the dock so ``section`` is visible."""
        self._scroll.ensureWidgetVisible(section)

    def watch_window(self) -> None:
        """Watch the main window's Close event (called once docked, and whenever a proposal appears)."""
        top = self.window()
        old = self._watched_window() if self._watched_window is not None else None
        if top is not self and top is not old:
            if old is not None:
                old.removeEventFilter(self)
            top.installEventFilter(self)
            self._watched_window = weakref.ref(top)   # no strong reference to napari's window

    def event(self, event) -> bool:
        if event.type() == QEvent.Show:
            self.watch_window()
            inner = self._scroll.widget()   # wide enough for every section, scroll vertically only
            self._scroll.setMinimumWidth(inner.minimumSizeHint().width() + self._scroll.verticalScrollBar().sizeHint().width() + 4)
        return super().event(event)

    def _stash(self) -> None:
        try:
            note = self.project_panel.images.stash_edits()
            if note and self.project_panel.project is None:
                print(f"promptseg: {note}", file=sys.stderr)   # the dock may be closing: say it here too
        except Exception as exc:  # never block closing; say what happened
            print(f"promptseg: could not save a draft: {exc}", file=sys.stderr)

    def _on_removing(self, event) -> None:
        if self.current is not None and self.viewer.layers[event.index].name == self.current.layer:
            self._stash()

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt name)
        if event.type() == QEvent.Close:
            self._stash()
            self.prefetcher.stop()        # background work ends with the window
            self.batch.stop()
            self.volume_panel.stop()
        return False

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
        img = self.image_for(layer)
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
        if self.current is not None and self.current.image == name and self.unsaved_edits() is not None:
            self.status.setText("⚠ the layer has edits: Accept them first, or delete the layer to propose "
                                "again (with a project open its edits are kept as a draft)")
            return
        device = self.device_combo.currentText()
        precisions = self.fast_mode.precisions(device)
        tau = self.threshold.value() / 100
        preload()
        self._set_busy(True, f"Proposing {', '.join(prompts)} on {name} …")
        t0 = time.perf_counter()

        def job():
            # Errors come back as values: the widget shows them; nothing is raised into Qt.
            try:
                return self.session.propose(img, prompts, tau, device, precisions)
            except (ValueError, RuntimeError, OSError) as exc:
                return _Failed(str(exc))  # not the exception itself: superqt re-raises those

        self._worker = start_worker(job, self._done,
                                    on_return=lambda r: self._show(name, layer, img, r, time.perf_counter() - t0))

    def predictor(self, device: str | None = None):
        """The session's Predictor on ``device`` (default: the dock's) at the Fast mode's
        precisions (loaded on first use; call from a worker thread holding ``session.lock``)."""
        device = device or self.device_combo.currentText()
        return self.session.predictor(device, self.fast_mode.precisions(device))

    def _done(self) -> None:
        self._worker = None
        self._set_busy(False)

    def _show(self, name: str, image_layer, img: np.ndarray, result, seconds: float) -> None:
        if isinstance(result, _Failed):
            self.status.setText(f"⚠ {result.message}")
            return
        r, uncertainty, disagreement, mapped = result.result, result.uncertainty, result.disagreement, result.mapped
        unknown = unknown_message(r.prompts, r.known)
        if unknown is not None and not r.known.any():   # nothing to show: say so, not an empty layer
            self.presence.setText("")
            self.status.setText(f"⚠ {unknown}")
            return
        if unknown is not None:   # an unknown class's mask is not shown as if it were a result
            r.probs[~r.known] = 0.0   # nor comes back when the threshold moves
            r.labels = np.where(np.isin(r.labels, np.flatnonzero(~r.known) + 1), 0, r.labels).astype(r.labels.dtype)
        out = f"{name} promptseg"
        prompt = "; ".join(r.prompts)
        if out in self.viewer.layers and self.viewer.layers[out].ndim != r.labels.ndim:
            self.current = None      # a volume proposal replaced by a slice proposal: not a draft
            self.viewer.layers.remove(out)
        show_labels(self.viewer, out, r.labels, r.prompts, r.presence, known_colors=self.project_panel.class_colors(),
                    scale=image_layer.scale[-2:] if r.labels.ndim == 2 else None,
                    metadata={"image": name, "prompt": prompt, "model": self.session.loaded_predictor.info.get("version")})
        self.current = Proposal(layer=out, image=name, prompts=list(r.prompts), image_array=img, probs=r.probs,
                                presence=r.presence, model_version=self.model_version, prompt=prompt,
                                tau=self.threshold.value() / 100,
                                slice_index=self.slice_index_of(image_layer))
        self.presence.setText(presence_text(r))
        names = [m.describe() if self.project_panel.project is not None else m.name for m in mapped]
        self.status.setText(f"Proposed {'; '.join(names)} on {name} in {seconds:.1f} s "
                            f"(uncertainty {uncertainty:.3f}, model vs text expert disagree on "
                            f"{100 * disagreement:.0f}%)." + (f" ⚠ {unknown}." if unknown else ""))
        self.history.append(self.prompt_edit.text())
        self.project_panel.register_prompts(mapped)
        self.refresh_completions()
        self.project_panel.on_proposed(self.current, uncertainty, image_layer, disagreement)
        self.watch_window()
        self.prefetcher.schedule()          # embed the next images while the annotator corrects

    # -- used by the project panel --------------------------------------------------------
    def image_for(self, layer) -> np.ndarray:
        """The layer's image, or its slice on screen for a 3-D volume."""
        data = np.asarray(layer.data)
        z = self.slice_index_of(layer)
        return data if z is None else data[z]

    def slice_index_of(self, layer) -> int | None:
        """The slice on screen (axis 0) of a 3-D volume layer; None for a 2-D image."""
        if np.ndim(layer.data) == 3 and not layer.rgb:
            return min(max(int(self.viewer.dims.current_step[0]), 0), layer.data.shape[0] - 1)
        return None

    def proposal_labels(self) -> np.ndarray:
        """The current proposal's label map as shown (before any edit)."""
        return self.current.labels()

    def edited_labels(self) -> np.ndarray | None:
        """The current proposal layer's data if the annotator changed it, else None."""
        p = self.current
        if p is None or p.layer not in self.viewer.layers:
            return None
        data = np.asarray(self.viewer.layers[p.layer].data)
        return None if np.array_equal(data, self.proposal_labels()) else data

    def refresh_completions(self) -> None:
        self.completer.set_words(completion_words(self.project_panel.project, self.history))

    def unsaved_edits(self) -> np.ndarray | None:
        """Edits of the current proposal that are neither the proposal nor already accepted."""
        data = self.edited_labels()
        acc = self.current.accepted if self.current is not None else None
        if data is None or (acc is not None and np.array_equal(data, acc)):
            return None
        return data

    def replace_if_untouched(self, image: str, result, model_version: int | None) -> bool:
        """A background proposal for the image on screen replaces the layer unless the
        annotator has edited it (edits always win)."""
        p = self.current
        if p is None or p.image != image or p.layer not in self.viewer.layers or p.probs is None:
            return False
        if self.edited_labels() is not None or result.probs.shape != p.probs.shape:
            return False
        p.probs, p.presence, p.model_version = result.probs, result.presence, model_version
        p.prompts = list(result.prompts)
        p.saved_proposal = p.labels()
        self.viewer.layers[p.layer].data = p.saved_proposal
        self.presence.setText(presence_text(result))
        return True

    def use_checkpoint(self, path: str | None, version: int | None) -> None:
        """Hot-load a model version: the next proposal uses it (embeddings cached per model)."""
        self.prefetcher.stop()
        self.session.use_checkpoint(path, version)

    def _on_threshold(self, value: int) -> None:
        tau = value / 100
        self.threshold_label.setText(f"{tau:.2f}")
        p = self.current
        if p is None or p.probs is None or p.layer not in self.viewer.layers:
            return
        if self.edited_labels() is not None:   # never overwrite the annotator's edits
            self.status.setText("⚠ threshold not applied: the layer has edits (Accept them, or Propose again)")
            return
        p.tau = tau
        self.viewer.layers[p.layer].data = self.proposal_labels()
