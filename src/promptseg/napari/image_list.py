"""The project's image list: status and uncertainty per image, add images, open, Next.

Opening another image (double-click, Next) first saves an edited, un-accepted proposal as a
draft (see drafts.py), then swaps the image layer it had opened before for the new one and
shows the image's draft, or else its latest label, as the editable Labels layer.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (QAbstractItemView, QFileDialog, QHeaderView, QTableWidget,
                            QTableWidgetItem, QVBoxLayout, QWidget)

from ..workflow.scoring import suggest_next
from .drafts import load_draft, save_draft, save_unsaved
from .layers import proposal_layer_name, show_labels
from .message_line import MessageLine
from .rows import button, hrow
from .state import Proposal

COLUMNS = ("Image", "Status", "Unsure", "Disagree")   # short headers leave the names room
HEADER_TIPS = ("The image's name in the project", "unlabelled, proposed, corrected or gold",
               "Uncertainty: mean binary entropy of the proposal's probabilities (0 certain, 1 coin flip)",
               "Disagreement between the model and its experts (1 − Dice)")


class ImageList(QWidget):
    def __init__(self, panel) -> None:
        super().__init__()
        self.panel = panel                 # ProjectPanel (holds .project, .state and .batch)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        for j, tip in enumerate(HEADER_TIPS):
            self.table.horizontalHeaderItem(j).setToolTip(tip)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.Stretch)
        for j in (1, 2, 3):
            header.setSectionResizeMode(j, QHeaderView.ResizeToContents)
        self.table.setMinimumHeight(110)
        self.table.setTextElideMode(Qt.ElideMiddle)   # long names keep their start and their end
        self.table.setToolTip("Double-click an image to open it")
        self.add_layers_btn = button("Add open layers", "Copy every open image layer into the project")
        self.add_folder_btn = button("Add folder…", "Copy every image file of a folder into the project")
        self.next_btn = button("Next", "Open the suggested image with its stored proposal: not accepted yet, and where "
                                       "the model is least sure (Shift+N)")
        self.batch_btn = button("Propose all", "Propose the prompt on every image not accepted yet (background, with "
                                               "progress; click again to stop); Next then ranks them by uncertainty")
        self.batch_info = MessageLine()   # Propose all's progress and outcome
        self.reason = MessageLine()       # what the list did last (added, opened, why Next chose it)
        row = hrow(self.add_layers_btn, self.add_folder_btn, self.next_btn)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.table)
        lay.addWidget(row)
        lay.addWidget(self.batch_btn)
        lay.addWidget(self.batch_info)
        lay.addWidget(self.reason)
        self.table.cellDoubleClicked.connect(lambda r, _c: self.open_image(self.table.item(r, 0).text()))
        self.add_layers_btn.clicked.connect(self.add_open_layers)
        self.add_folder_btn.clicked.connect(lambda: self.add_folder())
        self.next_btn.clicked.connect(self.next_image)
        self.batch_btn.clicked.connect(self.toggle_batch)

    @property
    def state(self):
        return self.panel.state

    @property
    def project(self):
        return self.panel.project

    def _say(self, text: str) -> None:
        self.reason.say(text)

    def _no_project(self) -> bool:
        """Warn (once) and return True when no project is open."""
        if self.project is None:
            self.reason.warn("open a project first (folder above)", cause="no project")
        return self.project is None

    # -- table ---------------------------------------------------------------------------
    def rows(self) -> list[dict]:
        return self.project.image_status() if self.project is not None else []

    def refresh(self) -> None:
        rows = self.rows()
        self.table.setRowCount(len(rows))
        for i, r in enumerate(rows):
            u, d = r["uncertainty"], r.get("disagreement")
            cells = (r["name"], r["status"], "" if u is None else f"{u:.3f}", "" if d is None else f"{100 * d:.0f}%")
            who = f"model v{r['model_version']}" if r["model_version"] is not None else "the default model"
            tips = ("", "", f"mean binary entropy of {who}'s probabilities",
                    f"1 − Dice between {who}'s masks and its experts': the text-similarity map and, "
                    "for Propose all and the refresh after a round, the decoder prompted with exemplars "
                    "from accepted labels")
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if j == 0:
                    item.setToolTip(text)
                if j >= 2:
                    item.setTextAlignment(int(Qt.AlignRight | Qt.AlignVCenter))
                    if text:
                        item.setToolTip(tips[j])
                self.table.setItem(i, j, item)

    # -- batch propose ----------------------------------------------------------------------
    def toggle_batch(self) -> None:
        batch = self.panel.batch
        if batch.busy:
            batch.stop()
            self.batch_info.say("Stopping after the image in progress …")
            return
        msg = batch.start()   # a refusal comes back marked with the warning sign
        self.batch_info.say(msg, "warning" if msg.startswith("⚠") else "info")
        if batch.busy:
            self.batch_btn.setText("Stop")

    def batch_note(self, text: str) -> None:
        self.batch_info.say(text)

    def batch_finished(self, text: str) -> None:
        self.batch_btn.setText("Propose all")
        self.batch_info.say(text)
        self.panel.show_summary()

    # -- adding images ---------------------------------------------------------------------
    def add_open_layers(self) -> None:
        """Copy every open image layer into the project (idempotent); report what was skipped."""
        from napari.layers import Image

        from ..project import ProjectError

        if self._no_project():
            return
        added, skipped = [], []
        for layer in [ly for ly in self.state.viewer.layers if isinstance(ly, Image)]:
            data = np.asarray(layer.data)
            ndim = data.ndim - (1 if layer.rgb else 0)
            if ndim not in (2, 3):
                skipped.append(f"{layer.name}: {ndim}-D (PromptSeg takes 2-D images and 3-D volumes)")
                continue
            spacing = tuple(float(s) for s in layer.scale[-ndim:])
            try:
                rec = self.project.add_image(data, name=layer.name, rgb=bool(layer.rgb),
                                             spacing=None if all(s == 1.0 for s in spacing) else spacing)
            except ProjectError as exc:
                skipped.append(f"{layer.name}: {exc}")
                continue
            layer.metadata["project_image"] = rec.name
            added.append(rec.name)
        self.refresh()
        self.panel.show_summary()
        self._say(f"Added {len(added)} layer(s)" + (f"; skipped {len(skipped)}: " + "; ".join(skipped) if skipped else "."))

    def add_folder(self, folder: str | None = None) -> None:
        """Add every readable image file of ``folder`` (asks for one when None)."""
        from ..io import SUPPORTED_SUFFIXES, read_image
        from ..project import ProjectError

        if self._no_project():
            return
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Add a folder of images")
            if not folder:
                return
        root = Path(folder)
        if not root.is_dir():
            self.reason.warn(f"not a folder: {root}")
            return
        files = [p for p in sorted(root.iterdir()) if p.is_file() and p.name.lower().endswith(SUPPORTED_SUFFIXES)]
        added, skipped = [], []
        for path in files:
            try:
                data, meta = read_image(path)
                rgb = bool(meta.get("rgb"))   # from the format: a thin volume is not colour
                ndim = np.ndim(data) - (1 if rgb else 0)
                if ndim not in (2, 3):
                    raise ValueError(f"{ndim}-D image (PromptSeg takes 2-D images and 3-D volumes)")
                spacing = tuple(float(s) for s in meta.get("spacing") or ()) or None
                rec = self.project.add_image(np.asarray(data), name=path.name.split(".")[0], spacing=spacing,
                                             rgb=rgb)
                added.append(rec.name)
            except (ValueError, OSError, ProjectError) as exc:
                skipped.append(f"{path.name}: {exc}")
        self.refresh()
        self.panel.show_summary()
        if not files:
            self.reason.warn(f"no image files ({', '.join(SUPPORTED_SUFFIXES)}) in {root}")
            return
        msg = f"Added {len(added)} image(s) from {root.name}"
        if skipped:
            self.reason.warn(msg + f"; skipped {len(skipped)}: " + "; ".join(skipped))
        else:
            self._say(msg + ".")

    # -- navigation --------------------------------------------------------------------------
    def stash_edits(self) -> str:
        """Save the current proposal's unsaved edits as a draft; returns a note ('' if none)."""
        w, proj = self.state, self.project
        edited = w.unsaved_edits()
        if edited is None or (w.current.stashed is not None and np.array_equal(edited, w.current.stashed)):
            return ""
        w.current.stashed = np.array(edited)
        if proj is None:     # no project to keep a draft in: a label file napari can open
            path = save_unsaved(w.current, edited)
            w.say(f"Unsaved edits of {w.current.image} kept in {path}")
            return f"edits of {w.current.image} kept in {path}. "
        save_draft(proj.root, w.current, edited, w.current.tau)
        return f"draft of {w.current.image} saved. "

    def next_image(self) -> None:
        if self._no_project():
            return
        current = self.state.current.image if self.state.current else self.state.image_name
        row, why = suggest_next(self.rows(), exclude=current or None)
        if row is None:
            self._say(f"Nothing to do: {why}.")
            return
        self.open_image(row["name"], why=f"Next → {why}")

    def open_image(self, name: str, why: str = "") -> None:
        from ..project import ProjectError

        w, viewer, proj = self.state, self.state.viewer, self.project
        if proj is None:
            return
        try:
            rec = proj.image(name)
            note = self.stash_edits()
            for ly in list(viewer.layers):     # the image opened before, and its proposal layer
                if ly.metadata.get("promptseg_opened") and ly.name != name:
                    for gone in (proposal_layer_name(ly.name), ly.name):
                        if gone in viewer.layers:
                            viewer.layers.remove(gone)
            if w.current is not None and w.current.layer not in viewer.layers:
                w.current = None
            if name in viewer.layers:
                layer = viewer.layers[name]
            else:
                data = proj.read_image(rec)
                rgb = rec.spatial_shape != tuple(data.shape)   # the record knows colour from volume
                kw = {}
                if rec.spacing and len(rec.spacing) == data.ndim - (1 if rgb else 0):
                    kw["scale"] = rec.spacing
                layer = viewer.add_image(data, name=name, rgb=rgb, **kw,
                                         metadata={"project_image": name, "promptseg_opened": True})
            w.set_image(name)                   # the dock follows; its panels clear their notes
            viewer.layers.selection.active = layer
            w.presence_changed.emit("")
            w.say(f"Opened {name}.")
            note += self._restore(rec, layer)
        except (ProjectError, OSError, ValueError) as exc:
            self.reason.warn(f"could not open {name}: {exc}")
            return
        self._select_row(name)
        self._say((why + "\n" if why else "") + note)

    def _restore(self, rec, layer) -> str:
        """Show the image's draft, else its latest label, as the editable proposal layer."""
        w, proj = self.state, self.project
        image = w.image_for(layer)
        out = proposal_layer_name(rec.name)
        scale = layer.scale[-2:]
        draft = load_draft(proj.root, rec.name, image, out)
        if draft is not None:
            p, edited = draft
            show_labels(w.viewer, out, edited, p.prompts, scale=scale, known_colors=self.panel.class_colors(),
                        metadata={"image": rec.name, "prompt": p.prompt})
            w.current = p
            return "Restored your unsaved draft."
        lab = proj.latest_label(rec, ("proposal", "corrected", "gold"))
        if lab is None or len(rec.spatial_shape) != 2:   # a volume's labels are shown by its own panel
            return ""
        arr, classes = proj.read_label(lab)
        if arr.shape != np.shape(image)[:2]:
            return ""
        show_labels(w.viewer, out, arr.astype(np.int32), classes, scale=scale, known_colors=self.panel.class_colors(),
                    metadata={"image": rec.name, "prompt": lab.prompt or ""})
        w.current = Proposal(layer=out, image=rec.name, prompts=classes, image_array=image, fixed=arr.astype(np.int32),
                             model_version=lab.model_version, prompt=lab.prompt or "; ".join(classes),
                             saved_proposal=arr if lab.kind == "proposal" else None,
                             accepted=arr.astype(np.int32) if lab.kind != "proposal" else None)
        by = f"model v{lab.model_version}" if lab.model_version is not None else "the default model"
        if lab.kind == "proposal":
            return f"Showing its stored proposal (label rev {lab.version}, by {by}): edit it and Accept."
        return f"Showing its {lab.kind} label (label rev {lab.version})."

    def _select_row(self, name: str) -> None:
        for i in range(self.table.rowCount()):
            if self.table.item(i, 0).text() == name:
                self.table.selectRow(i)
                return
