"""PromptSeg dock widget: type class prompts, get a Labels layer proposal.

The model loads and the image on screen is embedded in worker threads as soon as the dock
opens (warmup.py); every Propose runs in a worker too, so the viewer stays responsive. The
threshold slider re-merges cached probabilities without re-running anything. What the panels
share is a ``DockState`` (dock_state.py); the layout is dock_layout.py.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtCore import QEvent, Qt
from qtpy.QtWidgets import QComboBox, QFormLayout, QGroupBox, QLabel, QLineEdit, QSlider, QWidget

from ..workflow.session import AnnotationSession
from . import dock_layout
from .background import BatchProposer, Prefetcher
from .dock_state import DockState
from .fast_mode import FastModeBox
from .layers import proposal_layer_name, run_in_turns, show_labels_steps
from .message_line import MessageLine
from .project_panel import ProjectPanel
from .proposal_layer import ProposalLayers
from .prompt_assist import SegmentCompleter, completion_words
from .refine import RefinePanel
from .rows import button, hrow
from .shortcuts import bind as bind_shortcuts, help_text
from .state import Proposal
from .volume_panel import VolumePanel
from .warmup import DEVICES, ModelLoader, ScreenEmbedder
from .window_close import DockClosing
from .workers import start_worker

if TYPE_CHECKING:
    import napari

HELP = ("Type one or more class names separated by ';' (e.g. 'nucleus' or "
        "'thalamus; putamen') and press Enter or Propose (Shift+P in the viewer).")
NO_IMAGE = "open an image first (File > Open, or File > Open Sample > PromptSeg)"


@dataclass
class _Failed:
    message: str


class PromptSegWidget(QWidget):
    def __init__(self, napari_viewer: "napari.viewer.Viewer", checkpoint: str | None = None):
        super().__init__()
        self.viewer = napari_viewer
        # project, model and Predictor, shared with panels and workers (set_image + predict under session.lock)
        self.session = AnnotationSession(checkpoint)
        self.state = DockState(napari_viewer, self.session)
        self.loader = ModelLoader(self.state)
        self.embedder = ScreenEmbedder(self.state)
        self.prefetcher = Prefetcher(self.state)
        self.batch = BatchProposer(self.state)
        self.layers_ahead = ProposalLayers(self.state)   # the proposal layer, made before its mask
        self._worker = None
        self._showing: bool | str = False   # a proposal is being shown over a few turns ("done": its worker ended)
        self._pending = False          # Propose was clicked while the model was loading
        self.setObjectName("PromptSegWidget")
        self._build_controls()
        self.project_panel = ProjectPanel(self.state, self.batch)
        self.refine_panel = RefinePanel(self.state)
        self.volume_panel = VolumePanel(self.state)
        # drafts and background work end with the window
        self.closing = DockClosing(self.state, self.project_panel.images, [self.prefetcher, self.batch, self.volume_panel])
        self._build_layout()
        self._connect()
        self._refresh_images()
        bind_shortcuts(self)
        self.keys_help.setText(help_text())
        self.loader.load()              # the model loads in a worker as soon as the dock exists
        self.layers_ahead.wait_for_drawing(self)         # ... once the dock has drawn itself
        dock_layout.draw_in_steps(self, self.tabs, self.layers_ahead.resume)

    def _build_controls(self) -> None:
        self.guide = QLabel(dock_layout.FIRST_USE)
        self.guide.setWordWrap(True)
        self.guide.setTextFormat(Qt.RichText)
        self.image_combo = QComboBox()
        self.image_combo.setToolTip("The image layer to propose on (a 3-D volume: the slice on screen)")
        self.device_combo = QComboBox()
        self.device_combo.addItems(list(DEVICES))
        self.device_combo.setToolTip("Where the model runs: auto picks a GPU when there is one")
        self.fast_mode = FastModeBox(self.device_combo)
        self.prompt_edit = QLineEdit()
        self.prompt_edit.setPlaceholderText("nucleus   or   thalamus; putamen")
        self.prompt_edit.setToolTip(HELP)
        self.propose_btn = button("Propose", "Propose the typed classes on the image as a Labels layer to correct")
        self.completer = SegmentCompleter(self.prompt_edit)
        self.history: list[str] = []
        self.threshold = QSlider(Qt.Horizontal)
        self.threshold.setRange(5, 95)
        self.threshold.setValue(50)
        self.threshold.setToolTip("Probability above which a pixel joins a class; moving it re-merges "
                                  "without running the model (not after edits)")
        self.threshold_label = QLabel("0.50")
        self.status = MessageLine()           # the main loop's message line
        self.presence = QLabel("")
        self.presence.setWordWrap(True)
        self.keys_help = QLabel("")
        self.keys_help.setWordWrap(True)
        self.keys_help.setStyleSheet("color: gray")

    def _build_layout(self) -> None:
        box = QGroupBox("Propose")
        form = QFormLayout(box)
        form.addRow("Image", self.image_combo)
        form.addRow("Classes", hrow(self.prompt_edit, self.propose_btn, stretch=self.prompt_edit))
        form.addRow("Threshold", hrow(self.threshold, self.threshold_label, QLabel("Device"), self.device_combo,
                                      self.fast_mode, stretch=self.threshold))
        panel = self.project_panel
        self.tabs = dock_layout.build(
            self, [self.guide, box, self.status, self.presence, panel.accept_box, panel.retrain_box],
            {"Refine": [self.refine_panel, self.keys_help], "Project": [panel], "Train": [panel.monitor],
             "3-D": [self.volume_panel]})
        # fixed heights: a new message never re-lays the dock out; the full text is the tooltip
        line = self.status.fontMetrics().lineSpacing()
        for label, lines in ((self.status, 3), (self.presence, 2)):
            label.setFixedHeight(lines * line + 2 * (lines - 1))
            label.setAlignment(Qt.AlignLeft | Qt.AlignTop)

    def _connect(self) -> None:
        state, panel = self.state, self.project_panel
        self.propose_btn.clicked.connect(self.propose)
        self.prompt_edit.returnPressed.connect(self.propose)
        self.prompt_edit.textChanged.connect(self._on_prompt_text)
        self.threshold.valueChanged.connect(self._on_threshold)
        self.image_combo.currentTextChanged.connect(state.set_image)
        self.device_combo.currentTextChanged.connect(self._on_device)
        self.fast_mode.toggled.connect(lambda on: setattr(state, "fast", bool(on)))
        self.refine_panel.max_exemplars.valueChanged.connect(lambda n: setattr(state, "exemplar_limit", int(n)))
        state.message.connect(self._on_message)
        state.presence_changed.connect(self.presence.setText)
        state.proposal_changed.connect(self._on_proposal)
        state.image_changed.connect(self.embedder.embed)
        state.image_changed.connect(self.layers_ahead.prepare)
        state.image_changed.connect(self._follow_image)
        state.image_changed.connect(lambda _: self.prefetcher.schedule())
        state.model_loading.connect(lambda: self.status.say("loading model …", cause="model"))
        state.model_ready.connect(self._on_model_ready)
        state.model_failed.connect(self._on_model_failed)
        state.model_failed.connect(lambda msg: self.status.error(f"the model could not be loaded: {msg}",
                                                                 cause="model"))
        # the project panel hears of proposals, new class names and background results
        panel.model_changed.connect(self.use_checkpoint)
        panel.project_changed.connect(self.refresh_completions)
        state.proposed.connect(panel.on_proposed)
        state.prompts_mapped.connect(panel.register_prompts)
        state.images_changed.connect(panel.images.refresh)
        state.batch_note.connect(panel.images.batch_note)
        state.batch_finished.connect(panel.images.batch_finished)
        for ev in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            ev.connect(self._refresh_images)
        # unsaved edits become a draft when their layer goes away (close removes layers first)
        self.viewer.layers.events.removing.connect(self.closing.on_layer_removing)

    @property
    def proposing(self) -> bool:
        """A Propose is running or waits for the model (other panels wait for it)."""
        return self._worker is not None or self._pending

    def show_section(self, section) -> None:
        """Bring the tab holding ``section`` to the front (nothing to do for the main loop)."""
        i = dock_layout.tab_of(self.tabs, section)
        if i >= 0:
            self.tabs.setCurrentIndex(i)

    def watch_window(self) -> None:
        """Watch the main window's Close event (called once docked, and whenever a proposal appears)."""
        if self.window() is not self:
            self.closing.watch.watch(self.window())

    def event(self, event) -> bool:
        if event.type() == QEvent.Show:
            self.watch_window()
        return super().event(event)

    # -- state and messages --------------------------------------------------------------
    def _on_message(self, text: str, level: str, cause) -> None:
        if cause == "embedding" and self.status.message and self.status.cause not in ("embedding", "model"):
            return                 # background news never displaces a result or a warning
        if text:
            self.status.say(text, level, cause)
        elif cause is not None:
            self.status.clear_cause(cause)

    def _on_prompt_text(self, text: str) -> None:
        self.state.prompt_text = text
        self.status.clear_cause("prompt")

    def _on_device(self, device: str) -> None:
        self.state.device = device
        if self.state.loaded:            # load for the new device now, not at the next Propose
            self.loader.load()

    def _on_proposal(self, proposal) -> None:
        if proposal is not None:
            self.watch_window()
            # a mask is on screen now (e.g. a committed box of the unknown class): the warning is past
            self.status.clear_cause("unknown-class")

    def _on_model_failed(self, _message: str) -> None:
        self._pending = False                 # the waiting Propose is dropped; the button works again
        self.propose_btn.setEnabled(True)

    def _on_model_ready(self) -> None:
        self.status.clear_cause("model")
        self.fast_mode.set_ready(self.loader.fast)
        self.embedder.embed()
        if self._pending:
            self._pending = False
            self.propose_btn.setEnabled(True)
            self.propose()

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
        self.guide.setVisible(not names)          # first use: what to do, until an image is open
        if names:
            self.status.clear_cause("no-image")
        self.state.set_image(self.image_combo.currentText())

    def _follow_image(self, name: str) -> None:
        """Show in the combo the image a panel chose (e.g. the project's Next)."""
        if name and name != self.image_combo.currentText() and self.image_combo.findText(name) >= 0:
            self.image_combo.setCurrentText(name)

    def _current_image(self) -> tuple[str, np.ndarray, object]:
        name = self.image_combo.currentText()
        if not name or name not in self.viewer.layers:
            raise LookupError(NO_IMAGE)
        layer = self.viewer.layers[name]
        ndim = np.ndim(layer.data) - (1 if layer.rgb else 0)
        if ndim not in (2, 3):
            raise ValueError(f"layer {name!r} has {ndim} dimensions; PromptSeg works on 2-D images "
                             "and on the current slice of a 3-D volume")
        img = self.state.image_for(layer)
        return name, img, layer

    # -- actions -----------------------------------------------------------------------
    def _set_busy(self, busy: bool, msg: str = "") -> None:
        self.propose_btn.setEnabled(not busy)
        self.state.proposing = busy
        if msg:
            self.status.say(msg, cause="propose")

    def _prompts(self) -> list[str] | None:
        """The typed classes, or None with the reason on the message line."""
        from ..model.text import split_prompts

        try:
            return split_prompts(self.prompt_edit.text())
        except ValueError as exc:
            self.status.warn(str(exc), cause="prompt")
            return None

    def propose(self) -> None:
        if self._worker is not None:
            return
        # split_prompts imports torch: while the loading worker imports it, the GUI thread waits
        # for the model instead of blocking on the import
        light = not self.state.loaded and "promptseg.model.text" not in sys.modules
        prompts = None if light else self._prompts()
        if not light and prompts is None:
            return
        try:
            name, img, layer = self._current_image()
        except LookupError as exc:
            self.status.warn(str(exc.args[0]), cause="no-image")
            return
        except ValueError as exc:
            self.status.warn(str(exc), cause="image")
            return
        if light:
            self._pending = True
            self.propose_btn.setEnabled(False)      # one Propose waits; it runs once the model is ready
            self.status.say("Propose starts once the model has loaded …", cause="model")
            return
        if self.state.current is not None and self.state.current.image == name and self.state.unsaved_edits() is not None:
            self.status.warn("the layer has edits: Accept them first, or delete the layer to propose "
                             "again (with a project open its edits are kept as a draft)", cause="edits")
            return
        device = self.device_combo.currentText()
        precisions = self.state.precisions(device)
        tau = self.threshold.value() / 100
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

    def _done(self) -> None:
        if self._showing:               # the mask is still being shown: done once it is
            self._showing = "done"
            return
        self._worker = None
        self._set_busy(False)

    def _show(self, name: str, image_layer, img: np.ndarray, result, seconds: float) -> None:
        from ..inference.vocabulary import hide_unknown, presence_text

        if isinstance(result, _Failed):
            self.status.warn(result.message, cause="propose")
            return
        r, uncertainty, disagreement, mapped = result.result, result.uncertainty, result.disagreement, result.mapped
        unknown = hide_unknown(r)     # an unknown class's mask is not shown as if it were a result
        if unknown is not None and not r.known.any():   # nothing to show: say so, not an empty layer
            self.presence.setText("")
            self.status.warn(unknown, cause="unknown-class")
            return
        out = proposal_layer_name(name)
        prompt = "; ".join(r.prompts)
        if out in self.viewer.layers and self.viewer.layers[out].ndim != r.labels.ndim:
            self.state.current = None      # a volume proposal replaced by a slice proposal: not a draft
            self.viewer.layers.remove(out)
        self.presence.setText(presence_text(r))
        names = [m.describe() if self.session.project is not None else m.name for m in mapped]
        self.status.say(f"Proposed {'; '.join(names)} on {name} in {seconds:.1f} s "
                        f"(uncertainty {uncertainty:.3f}, model vs text expert disagree on "
                        f"{100 * disagreement:.0f}%)." + (f" ⚠ {unknown}." if unknown else ""), cause="propose")
        steps = show_labels_steps(self.viewer, out, r.labels, r.prompts, r.presence, known_colors=self.state.class_colors(),
                                  scale=image_layer.scale[-2:] if r.labels.ndim == 2 else None,
                                  metadata={"image": name, "prompt": prompt, "model": self.session.loaded_predictor.info.get("version")})

        def shown(_layer) -> None:    # the layer is filled, shown and selected over a few turns
            self.state.current = Proposal(layer=out, image=name, prompts=list(r.prompts), image_array=img, probs=r.probs,
                                    presence=r.presence, model_version=self.state.model_version, prompt=prompt,
                                    tau=self.threshold.value() / 100,
                                    slice_index=self.state.slice_index_of(image_layer))
            self.history.append(self.prompt_edit.text())
            self.state.prompts_mapped.emit(mapped)
            self.refresh_completions()
            self.state.proposed.emit(self.state.current, float(uncertainty), image_layer, disagreement)
            self.prefetcher.schedule()          # embed the next images while the annotator corrects
            finished, self._showing = self._showing == "done", False
            if finished:
                self._done()

        self._showing = True
        run_in_turns(steps, shown)

    def refresh_completions(self) -> None:
        self.completer.set_words(completion_words(self.session.project, self.history))

    def use_checkpoint(self, path: str | None, version: int | None) -> None:
        """Hot-load a model version in the background: the next proposal uses it (embeddings
        are cached per model)."""
        self.prefetcher.stop()
        self.session.use_checkpoint(path, version)
        self.state.model_changed.emit(path, version)
        if self.state.loaded:
            self.loader.load()

    def _on_threshold(self, value: int) -> None:
        tau = value / 100
        self.state.tau = tau
        self.threshold_label.setText(f"{tau:.2f}")
        p = self.state.current
        if p is None or p.probs is None or p.layer not in self.viewer.layers:
            return
        if self.state.edited_labels() is not None:   # never overwrite the annotator's edits
            self.status.warn("threshold not applied: the layer has edits (Accept them, or Propose again)",
                             cause="edits")
            return
        p.tau = tau
        self.viewer.layers[p.layer].data = p.labels()
