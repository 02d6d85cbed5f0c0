"""Project section of the dock: open/create a project, Accept a corrected layer, Retrain.

Retraining runs `promptseg train` as a child process (QProcess) and follows its JSON lines;
napari's process never trains. Cancel sends SIGTERM: the round stops at the next step and the
previous model stays active.
"""
from __future__ import annotations

import json
import shutil
import sys
import time

import numpy as np
from qtpy.QtCore import QProcess, Signal
from qtpy.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QProgressBar,
                            QSpinBox, QTabWidget, QVBoxLayout)

from .drafts import delete_draft
from .image_list import ImageList
from .message_line import MessageLine
from .project_folder import ProjectFolder
from .retrain_view import LossPlot, RoundsTable
from .round_progress import RoundProgress
from .rows import button, hrow
from .workers import BACKGROUND_NICE


class ProjectPanel(QGroupBox):
    # (model folder or None, version or None): a project opened, a version picked, a round done
    model_changed = Signal(object, object)
    # the project's classes, images or model versions changed (prompt completions follow)
    project_changed = Signal()

    def __init__(self, state, batch) -> None:
        super().__init__("Project")
        self.state = state            # dock_state.DockState: viewer, proposal on screen, device, messages
        self.session = state.session  # workflow/session.py: the project, model and Predictor
        self.batch = batch            # background.BatchProposer: re-proposes after a round
        self.proc: QProcess | None = None
        self._buf = ""
        self.events: list[dict] = []
        self._opened_at: dict[str, float] = {}
        # One message line per section, next to the controls it is about.
        self.info = MessageLine("No project open.")
        self.accept_msg = MessageLine()
        self.retrain_msg = MessageLine()
        self.folder = ProjectFolder(self.info, self._opened)
        self.path_edit, self.open_btn = self.folder.path_edit, self.folder.open_btn
        self.accept_btn = button("Accept", "Save the proposal layer, as you corrected it, as this image's label (Shift+A)")
        self.next_after_accept = QCheckBox("then Next")
        self.next_after_accept.setToolTip("After Accept, open the suggested next image")
        self.images = ImageList(self)
        self.steps = QSpinBox()
        self.steps.setRange(1, 100000)
        self.steps.setValue(200)
        self.views = QSpinBox()
        self.views.setRange(0, 8)
        self.views.setSpecialValueText("auto")   # 0: the round picks (8 on a GPU, 1 on a CPU)
        self.views.setToolTip("Turned and flipped copies of each accepted label to train on; each costs one "
                              "encoder pass per image, once (auto: 8 on a GPU, 1 on a CPU)")
        self.steps.setToolTip("Optimiser steps of the next training round")
        self.retrain_btn = button("Retrain", "Train a new model version on the accepted labels, in a separate process (Shift+R)")
        self.cancel_btn = button("Cancel", "Stop the round; the previous model version stays active")
        self.cancel_btn.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setToolTip("The whole round: embedding its images, then its training steps")
        self.round_progress = RoundProgress(self.progress)
        self.plot = LossPlot()
        self.rounds_table = RoundsTable()
        self.monitor = QTabWidget()
        self.monitor.addTab(self.plot, "Loss / Dice")
        self.monitor.addTab(self.rounds_table, "Rounds")
        self.versions = QComboBox()
        self.versions.setToolTip("Active model version; pick an older one to roll back")
        row = hrow(self.retrain_btn, self.cancel_btn)
        # Three sections, placed by the dock in the order of the work: Project (this box),
        # then Prompt and Refine, then Accept and Retrain.
        form = QFormLayout(self)
        form.addRow(self.folder)
        form.addRow(self.info)
        form.addRow(self.images)
        self.accept_box = QGroupBox("Accept")
        av = QVBoxLayout(self.accept_box)
        ah = QHBoxLayout()
        ah.addWidget(self.accept_btn, 1)
        ah.addWidget(self.next_after_accept)
        av.addLayout(ah)
        av.addWidget(self.accept_msg)
        self.retrain_box = QGroupBox("Retrain")
        rf = QFormLayout(self.retrain_box)
        rf.addRow("Steps", self.steps)
        rf.addRow("Image views", self.views)
        rf.addRow(row)
        rf.addRow(self.progress)
        rf.addRow(self.retrain_msg)
        rf.addRow(self.monitor)
        rf.addRow("Model", self.versions)
        self.accept_btn.clicked.connect(self.accept)
        self.retrain_btn.clicked.connect(self.retrain)
        self.cancel_btn.clicked.connect(self.cancel)
        self.versions.activated.connect(self._pick_version)

    @property
    def project(self):
        return self.session.project

    # -- project -------------------------------------------------------------------------
    def open_project(self) -> None:
        """Open the typed folder's project, or ask (in the panel) before creating one."""
        self.folder.ask()

    def _opened(self, project) -> None:
        if self.project is not None:
            self.project.close()
        self.session.open_project(project)   # its active model; its embedding cache
        for line in (self.accept_msg, self.retrain_msg, self.images.reason):
            line.clear_cause("no project")
        self.model_changed.emit(self.session.checkpoint, self.session.model_version)
        self.show_summary()

    def _refresh_versions(self) -> None:
        self.versions.blockSignals(True)
        self.versions.clear()
        active = self.project.active_model()
        if not self.project.models():
            self.versions.addItem("default model", None)
        for m in self.project.models():
            dice = m.metrics.get("val_dice")
            self.versions.addItem(f"model v{m.version}" + (f"  Dice {dice:.3f}" if dice is not None else ""),
                                  m.version)
            if active and m.version == active.version:
                self.versions.setCurrentIndex(self.versions.count() - 1)
        self.versions.blockSignals(False)

    def _pick_version(self, index: int) -> None:
        """Roll back (or forward) to another registered model version."""
        version = self.versions.itemData(index)
        if self.project is None or version is None or self.proc is not None:
            return
        self.project.set_active_model(version)
        self.model_changed.emit(str(self.project.model_dir(version)), version)
        self.show_summary()

    def show_summary(self) -> None:
        self.project_changed.emit()
        self._refresh_versions()
        self.images.refresh()
        self.rounds_table.refresh(self.project)
        s = self.project.summary()
        model = f"model v{s['active_model']}" if s["active_model"] else "default model"
        self.info.say(f"{s['images']} images, {s['labelled']} labelled, {model}")

    def class_colors(self) -> dict[str, str]:
        return self.state.class_colors()

    def register_prompts(self, mapped) -> None:
        """New names become classes; a prompt mapped onto a class by similarity becomes a synonym."""
        from ..workflow.propose import register_prompts

        if self.project is None:
            return
        for error in register_prompts(self.project, mapped):
            self.info.warn(error)

    def on_proposed(self, p, uncertainty: float, image_layer, disagreement: float | None = None) -> None:
        """A proposal appeared: for a project image, store it and its uncertainty."""
        from ..project import ProjectError
        from ..workflow.propose import store_proposal

        self.accept_msg.clear_cause("no proposal")
        if self.project is None or image_layer is None or image_layer.metadata.get("project_image") != p.image:
            return
        try:
            labels = p.labels()
            if store_proposal(self.project, p.image, labels, p.prompts, uncertainty, disagreement,
                              p.model_version, p.prompt) is not None:
                p.saved_proposal = labels
        except ProjectError as exc:
            self.info.warn(f"proposal not stored: {exc}")
            return
        self.images.refresh()

    # -- accept --------------------------------------------------------------------------
    def accept(self) -> None:
        """Save the current proposal layer, as corrected by the annotator, with provenance."""
        from ..project import ProjectError
        from ..workflow.accept import accept

        p = self.state.current
        if self.project is None:
            self.accept_msg.warn("open a project first (Project section)", cause="no project")
            return
        if p is None:
            self.accept_msg.warn("propose on an image first", cause="no proposal")
            return
        viewer = self.state.viewer
        if p.layer not in viewer.layers:
            self.accept_msg.warn(f"the layer {p.layer!r} was removed", cause="no proposal")
            return
        final = np.asarray(viewer.layers[p.layer].data).astype(np.int32)
        proposal = p.labels()
        image_layer = viewer.layers[p.image] if p.image in viewer.layers else None
        # A slice of a volume is stored as its own 2-D image; a volume keeps its voxel spacing.
        name = p.image if p.slice_index is None else f"{p.image}-z{p.slice_index:03d}"
        spacing = None
        if image_layer is not None and not image_layer.rgb:
            spacing = tuple(float(v) for v in image_layer.scale[-final.ndim:])
        try:
            done = accept(self.project, p.image_array, name, proposal, final, p.prompts, p.model_version, p.prompt,
                          seconds=time.time() - p.shown_at, spacing=spacing, stored_proposal=p.saved_proposal,
                          objects=p.objects)
        except ProjectError as exc:
            self.accept_msg.warn(str(exc))
            return
        except ValueError as exc:
            self.accept_msg.warn(f"not accepted: {exc}; nothing was saved")
            return
        rec, lab = done.image, done.label
        p.saved_proposal = proposal
        p.accepted = final
        delete_draft(self.project.root, p.image)
        if image_layer is not None and p.slice_index is None:
            image_layer.metadata["project_image"] = rec.name
        self.show_summary()
        self.accept_msg.say(f"accepted {rec.name} as label rev {lab.version} "
                            f"({100 * lab.edited_fraction:.1f}% of pixels edited)")
        if self.next_after_accept.isChecked():
            self.images.next_image()

    # -- retrain -------------------------------------------------------------------------
    def retrain(self) -> None:
        if self.project is None:
            self.retrain_msg.warn("open a project first (Project section)", cause="no project")
            return
        if self.proc is not None:
            return
        self.events.clear()
        self._buf = ""
        self.plot.reset("waiting for the first steps")
        self.monitor.setCurrentWidget(self.plot)
        self.proc = QProcess(self)
        cmd = [sys.executable, "-m", "promptseg.cli", "train", str(self.project.root),
               "--max-steps", str(self.steps.value()), "--device", self.state.device]
        if self.views.value():
            cmd += ["--views", str(self.views.value())]
        nice = shutil.which("nice")
        if nice:   # the round yields the CPU to napari (nice execs, so Cancel's SIGTERM reaches the round)
            cmd = [nice, "-n", str(BACKGROUND_NICE), *cmd]
        self.proc.setProgram(cmd[0])
        self.proc.setArguments(cmd[1:])
        self.proc.readyReadStandardOutput.connect(self._read)
        self.proc.finished.connect(self._finished)
        self.round_progress.start(self.steps.value())
        self.retrain_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.retrain_msg.say("Training round started (separate process) …")
        self.proc.start()

    def cancel(self) -> None:
        if self.proc is not None:
            self.proc.terminate()       # SIGTERM: the round stops at its next step
            self.retrain_msg.say("Cancelling …")

    def _read(self) -> None:
        self._buf += bytes(self.proc.readAllStandardOutput()).decode(errors="replace")
        *lines, self._buf = self._buf.split("\n")
        for line in lines:
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                continue
            self.events.append(ev)
            self._on_event(ev)

    def _on_event(self, ev: dict) -> None:
        kind = ev.get("event")
        self.plot.add_event(ev)
        text = self.round_progress.on_event(ev)
        if text is not None:
            self.retrain_msg.say(text)
        elif kind == "eval":
            self.retrain_msg.say(f"validation Dice {ev['dice']:.3f}")
        elif kind == "done":
            version = ev["model_version"]
            self.model_changed.emit(str(self.project.model_dir(version)), version)
            self._refresh_versions()
            self.rounds_table.refresh(self.project)
            refresh = self.batch.refresh()
            route = (ev.get("metrics") or {}).get("route")
            trained = f" (trained: {route})" if route else ""
            self.retrain_msg.say(f"Round done: model v{version} is active{trained}." + (f" {refresh}" if refresh else ""))
            self.show_summary()
        elif kind == "cancelled":
            self.retrain_msg.say("Round cancelled; the previous model version stays active.")
        elif kind == "error":
            self.retrain_msg.error(f"training failed: {ev.get('message')}")

    def _finished(self, *_) -> None:
        self._read()
        self.proc = None
        if self.project is not None:
            self.rounds_table.refresh(self.project)
        self.retrain_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
        self.round_progress.finish(any(e.get("event") == "done" for e in self.events))
        if self.project is not None and not any(e.get("event") in ("done", "error", "cancelled") for e in self.events):
            self.retrain_msg.error("the training process ended without finishing; the previous model version "
                                   "stays active")
