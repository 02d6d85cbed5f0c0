"""Project section of the dock: open/create a project, Accept a corrected layer, Retrain.

Retraining runs `promptseg train` as a child process (QProcess) and follows its JSON lines;
napari's process never trains. Cancel sends SIGTERM: the round stops at the next step and the
previous model stays active.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np
from qtpy.QtCore import QProcess
from qtpy.QtWidgets import (QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QProgressBar, QPushButton,
                            QSpinBox, QWidget)


class ProjectPanel(QGroupBox):
    def __init__(self, owner) -> None:
        super().__init__("Project")
        self.owner = owner            # the PromptSegWidget (viewer, predictor, last proposal)
        self.project = None
        self.proc: QProcess | None = None
        self._buf = ""
        self.events: list[dict] = []
        self._opened_at: dict[str, float] = {}
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("folder of a new or existing project")
        self.open_btn = QPushButton("Open / create")
        self.accept_btn = QPushButton("Accept")
        self.steps = QSpinBox()
        self.steps.setRange(1, 100000)
        self.steps.setValue(200)
        self.retrain_btn = QPushButton("Retrain")
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.progress = QProgressBar()
        self.versions = QComboBox()
        self.versions.setToolTip("Active model version; pick an older one to roll back")
        self.info = QLabel("No project open.")
        self.info.setWordWrap(True)
        row = QWidget()
        h = QHBoxLayout(row)
        h.setContentsMargins(0, 0, 0, 0)
        h.addWidget(self.retrain_btn)
        h.addWidget(self.cancel_btn)
        form = QFormLayout(self)
        form.addRow("Folder", self.path_edit)
        form.addRow(self.open_btn)
        form.addRow(self.accept_btn)
        form.addRow("Steps", self.steps)
        form.addRow(row)
        form.addRow(self.progress)
        form.addRow("Model", self.versions)
        form.addRow(self.info)
        self.open_btn.clicked.connect(self.open_project)
        self.accept_btn.clicked.connect(self.accept)
        self.retrain_btn.clicked.connect(self.retrain)
        self.cancel_btn.clicked.connect(self.cancel)
        self.versions.activated.connect(self._pick_version)

    # -- project -------------------------------------------------------------------------
    def open_project(self) -> None:
        from ..project import Project, ProjectError

        path = self.path_edit.text().strip()
        if not path:
            self.info.setText("⚠ type a project folder")
            return
        try:
            if self.project is not None:
                self.project.close()
            self.project = Project.open_or_create(path)
        except ProjectError as exc:
            self.info.setText(f"⚠ {exc}")
            return
        self._show_summary()
        active = self.project.active_model()
        if active:
            self.owner.use_checkpoint(str(self.project.model_dir(active.version)), active.version)

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
        self.owner.use_checkpoint(str(self.project.model_dir(version)), version)
        self._show_summary()

    def _show_summary(self) -> None:
        self._refresh_versions()
        s = self.project.summary()
        self.info.setText(f"{s['images']} images, {s['labelled']} labelled, model v{s['active_model'] or '-'}")

    def note_proposal(self, image_name: str) -> None:
        self._opened_at.setdefault(image_name, time.time())

    # -- accept --------------------------------------------------------------------------
    def accept(self) -> None:
        """Save the current proposal layer, as corrected by the annotator, with provenance."""
        from ..engine.evaluate import dice, edited_fraction
        from ..project import ProjectError

        last = self.owner.last_proposal()
        if self.project is None or last is None:
            self.info.setText("⚠ open a project and propose on an image first")
            return
        layer_name, image_name, r, image = last
        viewer = self.owner.viewer
        if layer_name not in viewer.layers:
            self.info.setText(f"⚠ the layer {layer_name!r} was removed")
            return
        final = np.asarray(viewer.layers[layer_name].data).astype(np.int32)
        proposal = self.owner.proposal_labels()
        fg = [dice(proposal == k + 1, final == k + 1) for k in range(len(r.prompts))
              if (proposal == k + 1).any() or (final == k + 1).any()]
        try:
            rec = self.project.add_image(image, name=image_name)
            version = self.owner.model_version
            prompt = "; ".join(r.prompts)
            self.project.save_label(rec, proposal, r.prompts, "proposal", model_version=version, prompt=prompt)
            lab = self.project.save_label(
                rec, final, r.prompts, "corrected", model_version=version, prompt=prompt,
                dice_vs_proposal=float(np.mean(fg)) if fg else 1.0, edited_fraction=edited_fraction(proposal, final),
                seconds=time.time() - self._opened_at.pop(image_name, time.time()))
        except ProjectError as exc:
            self.info.setText(f"⚠ {exc}")
            return
        self._show_summary()
        self.info.setText(self.info.text() + f" — accepted {image_name} (v{lab.version}, "
                          f"{100 * lab.edited_fraction:.1f}% of pixels edited)")

    # -- retrain -------------------------------------------------------------------------
    def retrain(self) -> None:
        if self.project is None:
            self.info.setText("⚠ open a project first")
            return
        if self.proc is not None:
            return
        self.events.clear()
        self._buf = ""
        self.proc = QProcess(self)
        self.proc.setProgram(sys.executable)
        self.proc.setArguments(["-m", "promptseg.cli", "train", str(self.project.root),
                                "--max-steps", str(self.steps.value()),
                                "--device", self.owner.device_combo.currentText()])
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
            self.owner.use_checkpoint(str(self.project.model_dir(version)), version)
            self._refresh_versions()
            self.info.setText(f"Round done: model v{version} is active.")
        elif kind in ("error", "cancelled"):
            self.info.setText("Round cancelled; the previous model stays active." if kind == "cancelled"
                              else f"⚠ training failed: {ev.get('message')}")

    def _finished(self, *_) -> None:
        self._read()
        self.proc = None
        self.retrain_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
        if self.project is not None and not any(e.get("event") in ("done", "error", "cancelled") for e in self.events):
            self.info.setText("⚠ the training process ended without finishing; the previous model stays active")
