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
from qtpy.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
                            QProgressBar, QPushButton, QSpinBox, QTabWidget)

from .drafts import delete_draft
from .image_list import ImageList
from .retrain_view import LossPlot, RoundsTable
from .rows import hrow


NICE = 10   # scheduling priority of the training process: annotation stays smooth on small machines


class ProjectPanel(QGroupBox):
    # (model folder or None, version or None): a project opened, a version picked, a round done
    model_changed = Signal(object, object)

    def __init__(self, owner, session) -> None:
        super().__init__("Project")
        self.owner = owner            # the PromptSegWidget (viewer, last proposal, device)
        self.session = session        # workflow/session.py: the project, model and Predictor
        self.proc: QProcess | None = None
        self._buf = ""
        self.events: list[dict] = []
        self._opened_at: dict[str, float] = {}
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("folder of a new or existing project")
        self.open_btn = QPushButton("Open / create")
        self.accept_btn = QPushButton("Accept")
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
        self.retrain_btn = QPushButton("Retrain")
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.progress = QProgressBar()
        self.plot = LossPlot()
        self.rounds_table = RoundsTable()
        self.monitor = QTabWidget()
        self.monitor.addTab(self.plot, "Loss / Dice")
        self.monitor.addTab(self.rounds_table, "Rounds")
        self.versions = QComboBox()
        self.versions.setToolTip("Active model version; pick an older one to roll back")
        self.info = QLabel("No project open.")
        self.info.setWordWrap(True)
        row = hrow(self.retrain_btn, self.cancel_btn)
        # Three sections, placed by the dock in the order of the work: Project (this box),
        # then Prompt and Refine, then Accept and Retrain.
        form = QFormLayout(self)
        form.addRow("Folder", self.path_edit)
        form.addRow(self.open_btn)
        form.addRow(self.images)
        form.addRow(self.info)
        self.accept_box = QGroupBox("Accept")
        ah = QHBoxLayout(self.accept_box)
        ah.addWidget(self.accept_btn, 1)
        ah.addWidget(self.next_after_accept)
        self.retrain_box = QGroupBox("Retrain")
        rf = QFormLayout(self.retrain_box)
        rf.addRow("Steps", self.steps)
        rf.addRow("Image views", self.views)
        rf.addRow(row)
        rf.addRow(self.progress)
        rf.addRow(self.monitor)
        rf.addRow("Model", self.versions)
        self.open_btn.clicked.connect(self.open_project)
        self.accept_btn.clicked.connect(self.accept)
        self.retrain_btn.clicked.connect(self.retrain)
        self.cancel_btn.clicked.connect(self.cancel)
        self.versions.activated.connect(self._pick_version)

    @property
    def project(self):
        return self.session.project

    # -- project -------------------------------------------------------------------------
    def open_project(self) -> None:
        from ..project import Project, ProjectError

        path = self.path_edit.text().strip()
        if not path:
            self.info.setText("⚠ type a project folder")
            return
        try:
            project = Project.open_or_create(path)
        except ProjectError as exc:
            self.info.setText(f"⚠ {exc}")
            return
        if self.project is not None:
            self.project.close()
        self.session.open_project(project)   # its active model; its embedding cache
        self.model_changed.emit(self.session.checkpoint, self.session.model_version)
        self.show_summary()

    def _refresh_versions(self) -> None:
        self.versions.blockSignals(True)
        self.versions.clear()
        active = self.project.active_model()
        for m in self.project.models():
            dice = m.metrics.get("val_dice")
            self.versions.addItem(f"v{m.version}" + (f"  Dice {dice:.3f}" if dice is not None else ""), m.version)
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
        self.owner.refresh_completions()
        self._refresh_versions()
        self.images.refresh()
        self.rounds_table.refresh(self.project)
        s = self.project.summary()
        model = f"model v{s['active_model']}" if s["active_model"] else "default model"
        self.info.setText(f"{s['images']} images, {s['labelled']} labelled, {model}")

    def class_colors(self) -> dict[str, str]:
        return {c.name: c.color for c in self.project.classes()} if self.project is not None else {}

    def register_prompts(self, mapped) -> None:
        """New names become classes; a prompt mapped onto a class by similarity becomes a synonym."""
        from ..workflow.propose import register_prompts

        if self.project is None:
            return
        for error in register_prompts(self.project, mapped):
            self.info.setText(f"⚠ {error}")

    def on_proposed(self, p, uncertainty: float, image_layer, disagreement: float | None = None) -> None:
        """A proposal appeared: for a project image, store it and its uncertainty."""
        from ..project import ProjectError
        from ..workflow.propose import store_proposal

        if self.project is None or image_layer is None or image_layer.metadata.get("project_image") != p.image:
            return
        try:
            labels = p.labels()
            if store_proposal(self.project, p.image, labels, p.prompts, uncertainty, disagreement,
                              p.model_version, p.prompt) is not None:
                p.saved_proposal = labels
        except ProjectError as exc:
            self.info.setText(f"⚠ proposal not stored: {exc}")
            return
        self.images.refresh()

    # -- accept --------------------------------------------------------------------------
    def accept(self) -> None:
        """Save the current proposal layer, as corrected by the annotator, with provenance."""
        from ..project import ProjectError
        from ..workflow.accept import accept

        p = self.owner.current
        if self.project is None or p is None:
            self.info.setText("⚠ open a project and propose on an image first")
            return
        viewer = self.owner.viewer
        if p.layer not in viewer.layers:
            self.info.setText(f"⚠ the layer {p.layer!r} was removed")
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
            self.info.setText(f"⚠ {exc}")
            return
        except ValueError as exc:
            self.info.setText(f"⚠ not accepted: {exc}; nothing was saved")
            return
        rec, lab = done.image, done.label
        p.saved_proposal = proposal
        p.accepted = final
        delete_draft(self.project.root, p.image)
        if image_layer is not None and p.slice_index is None:
            image_layer.metadata["project_image"] = rec.name
        self.show_summary()
        self.info.setText(self.info.text() + f" — accepted {rec.name} (v{lab.version}, "
                          f"{100 * lab.edited_fraction:.1f}% of pixels edited)")
        if self.next_after_accept.isChecked():
            self.images.next_image()

    # -- retrain -------------------------------------------------------------------------
    def retrain(self) -> None:
        if self.project is None:
            self.info.setText("⚠ open a project first")
            return
        if self.proc is not None:
            return
        self.events.clear()
        self._buf = ""
        self.plot.reset()
        self.monitor.setCurrentWidget(self.plot)
        self.proc = QProcess(self)
        cmd = [sys.executable, "-m", "promptseg.cli", "train", str(self.project.root),
               "--max-steps", str(self.steps.value()), "--device", self.owner.device_combo.currentText()]
        if self.views.value():
            cmd += ["--views", str(self.views.value())]
        nice = shutil.which("nice")
        if nice:   # the round yields the CPU to napari (nice execs, so Cancel's SIGTERM reaches the round)
            cmd = [nice, "-n", str(NICE), *cmd]
        self.proc.setProgram(cmd[0])
        self.proc.setArguments(cmd[1:])
        self.proc.readyReadStandardOutput.connect(self._read)
        self.proc.finished.connect(self._finished)
        self.progress.setRange(0, self.steps.value())
        self.progress.setValue(0)
        self.retrain_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.info.setText("Training round started (separate process) …")
        self.proc.start()

    def cancel(self) -> None:
        if self.proc is not None:
            self.proc.terminate()       # SIGTERM: the round stops at its next step
            self.info.setText("Cancelling …")

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
        if kind == "embed":
            self.info.setText(f"Embedding labelled images {ev['done']}/{ev['total']} …")
        elif kind == "step":
            self.progress.setValue(int(ev["step"]))
            left = (self.progress.maximum() - ev["step"]) / max(ev.get("it_s", 1e-6), 1e-6)
            self.info.setText(f"step {ev['step']}/{self.progress.maximum()}  loss {ev['total']:.3f}  "
                              f"ETA {left:.0f} s")
        elif kind == "eval":
            self.info.setText(f"validation Dice {ev['dice']:.3f}")
        elif kind == "done":
            version = ev["model_version"]
            self.model_changed.emit(str(self.project.model_dir(version)), version)
            self._refresh_versions()
            self.rounds_table.refresh(self.project)
            refresh = self.owner.batch.refresh()
            self.info.setText(f"Round done: model v{version} is active." + (f" {refresh}" if refresh else ""))
        elif kind in ("error", "cancelled"):
            self.info.setText("Round cancelled; the previous model stays active." if kind == "cancelled"
                              else f"⚠ training failed: {ev.get('message')}")

    def _finished(self, *_) -> None:
        self._read()
        self.proc = None
        if self.project is not None:
            self.rounds_table.refresh(self.project)
        self.retrain_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
        if self.project is not None and not any(e.get("event") in ("done", "error", "cancelled") for e in self.events):
            self.info.setText("⚠ the training process ended without finishing; the previous model stays active")
