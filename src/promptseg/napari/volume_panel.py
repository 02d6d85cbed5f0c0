"""3-D section of the dock: propose on every slice of a volume, or propagate annotated slices.

Propose (Shift+P) works on the slice on screen; here "All slices" proposes along the chosen
axis and "Propagate" fills the other slices from the ones the annotator drew or corrected
(inference/volume.py). Both run in a worker thread, one slice at a time, with a napari progress
bar and Stop; the result is one 3-D Labels layer that Accept stores as the volume's label.
"""
from __future__ import annotations

import time

import numpy as np
from napari.utils import progress
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QGroupBox, QLabel, QVBoxLayout

from ..workflow.scoring import mean_entropy
from .dock_state import DockState
from .layers import proposal_layer_name, show_labels
from .rows import button, hrow
from .state import Proposal
from .workers import start_worker


# (menu text, inference/volume.py mode, tooltip); docs/benchmarks.md, "AAL coarse classes", compares the modes.
PROPAGATE_CHOICES = (
    ("optical flow", "flow", "Carry each slice's labels onto the next along the optical flow between the two "
     "slices: they move with the anatomy. No model. On a brain atlas this beats copying the nearest drawn slice"),
    ("flow + model", "flow+model", "Carry the labels along the flow, decode the slice with them as the mask "
     "prompt, and let the model change them only where it is confident"),
    ("model", "model", "Decode the slice with the typed classes and the neighbour's labels as they are"),
)


class VolumePanel(QGroupBox):
    def __init__(self, state: DockState) -> None:
        super().__init__("3D volume")
        self.state = state          # the dock's shared state: viewer, prompt, threshold, proposal on screen
        self.session = state.session
        self._worker = None
        self._bar = None
        self._stopped = False
        # the slice-to-slice flows of the last volume propagated along the flow, with its key:
        # a second Propagate on it (after a correction, or in the other flow mode) reuses them
        self._flows: tuple[tuple, dict] | None = None
        self.axis = QComboBox()
        self.axis.addItems(["axis 0", "axis 1", "axis 2"])
        self.axis.setToolTip("Slices are taken along this axis of the volume (axis 0 = napari's slider)")
        self.all_btn = button("All slices", "Propose the typed classes on every slice along the axis")
        self.propagate_btn = button("Propagate", "Keep the slices you drew or corrected; fill the others from them, "
                                                 "slice by slice, as 'Propagate by' says")
        self.mode = QComboBox()
        for text, mode, tip in PROPAGATE_CHOICES:
            self.mode.addItem(text, mode)
            self.mode.setItemData(self.mode.count() - 1, tip, Qt.ToolTipRole)
        self.mode.setToolTip("How Propagate fills a slice from its neighbour (hover an entry for details)")
        self.stop_btn = button("Stop", "Stop after the slice in progress; the slices done so far are kept")
        self.stop_btn.setEnabled(False)
        self.note = QLabel("For a 3-D image: Propose works on the slice on screen.")
        self.note.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.addWidget(hrow(self.axis, self.all_btn, self.propagate_btn, self.stop_btn))
        lay.addWidget(hrow(QLabel("Propagate by"), self.mode, stretch=self.mode))
        lay.addWidget(self.note)
        self.all_btn.clicked.connect(self.propose_all)
        self.propagate_btn.clicked.connect(self.propagate)
        self.stop_btn.clicked.connect(self.stop)

    @property
    def busy(self) -> bool:
        return self._worker is not None

    # -- inputs --------------------------------------------------------------------------
    def _volume(self):
        from napari.layers import Image

        name = self.state.image_name
        layer = self.state.image_layer()
        if not isinstance(layer, Image):
            raise ValueError("open a 3-D image first")
        if layer.rgb or layer.ndim != 3:
            raise ValueError(f"{name!r} is not a 3-D volume ({layer.ndim}-D{', RGB' if layer.rgb else ''}); "
                             "use Propose for 2-D images")
        return name, np.asarray(layer.data), layer

    def _seed_labels(self, name: str, volume: np.ndarray, axis: int):
        """(labels volume, seed slices, class names) from the proposal on screen."""
        from ..inference.volume import annotated_slices

        viewer, p = self.state.viewer, self.state.current
        if p is None or p.image != name or p.layer not in viewer.layers:
            raise ValueError("draw or correct at least one slice first: Propose on a slice (or All slices), "
                             "edit it, then Propagate")
        data = np.asarray(viewer.layers[p.layer].data)
        if data.ndim == 2:        # a single-slice proposal: that slice is the seed
            if p.slice_index is None or axis != 0:
                raise ValueError("a single-slice proposal propagates along axis 0 (the slider's axis)")
            vol = np.zeros(volume.shape, np.int32)
            vol[p.slice_index] = data
            return vol, [p.slice_index], p.prompts
        if data.shape != volume.shape:
            raise ValueError(f"the labels layer has shape {data.shape}, the volume {volume.shape}")
        seeds = annotated_slices(data, p.labels(), axis)
        if not seeds:
            raise ValueError("no slice differs from the proposal: correct at least one slice, then Propagate")
        return data.astype(np.int32), seeds, p.prompts

    # -- actions -------------------------------------------------------------------------
    def propose_all(self) -> None:
        from ..inference.volume import propose_slices, volume_slices
        from ..model.text import split_prompts
        from ..workflow.class_map import map_prompts, unique_names

        state = self.state
        if self.busy or state.proposing:
            return
        try:
            prompts = split_prompts(state.prompt_text)
            name, volume, layer = self._volume()
            axis = self.axis.currentIndex()
            n = volume_slices(volume, axis)
            self._check_unsaved(name)
        except ValueError as exc:
            self.note.setText(f"⚠ {exc}")
            return
        device, tau, classes = state.device, state.tau, self.session.class_synonyms()

        def job():
            try:
                with self.session.lock:
                    predictor = state.predictor(device)
                    mapped = map_prompts(prompts, classes, predictor.text)
                yield ("mapped", mapped)
                # the lock is held per slice, so Refine or the prefetcher can interleave
                for res in propose_slices(predictor, volume, unique_names(mapped), axis, tau, self.session.lock):
                    yield ("slice", res)
            except (ValueError, RuntimeError, OSError) as exc:
                yield ("error", str(exc))

        self._run(job, n, f"PromptSeg: proposing on {n} slices", name, layer, volume, axis, kind="propose")

    def propagate(self) -> None:
        from ..inference.volume import propagate, volume_slices

        state = self.state
        if self.busy or state.proposing:
            return
        try:
            name, volume, layer = self._volume()
            axis = self.axis.currentIndex()
            volume_slices(volume, axis)
            labels, seeds, prompts = self._seed_labels(name, volume, axis)
        except ValueError as exc:
            self.note.setText(f"⚠ {exc}")
            return
        device, tau = state.device, state.tau
        mode = self.mode.currentData()
        total = volume.shape[axis] - len(seeds)

        def job():
            try:
                yield ("seeds", (labels, seeds, prompts))
                predictor = None
                if mode != "flow":             # the flow alone needs no model
                    with self.session.lock:
                        predictor = state.predictor(device)
                flows = self._kept_flows(name, volume, axis) if mode != "model" else None
                for res in propagate(predictor, volume, labels, seeds, prompts, axis, tau, self.session.lock,
                                     mode=mode, flows=flows):
                    yield ("slice", res)
            except (ValueError, RuntimeError, OSError) as exc:
                yield ("error", str(exc))

        self._run(job, total, f"PromptSeg: propagating from {len(seeds)} slice(s)", name, layer, volume, axis,
                  kind="propagate")

    def _kept_flows(self, name: str, volume: np.ndarray, axis: int) -> dict:
        """The flows kept for this volume and axis (a fresh dict for another); one volume at a
        time, so memory stays at one volume's flows (at most 256² each). Runs in the worker."""
        from ..fsutil import array_sha256

        key = (name, array_sha256(volume), axis)
        if self._flows is None or self._flows[0] != key:
            self._flows = (key, {})
        return self._flows[1]

    def stop(self) -> None:
        if self._worker is not None:
            self._stopped = True
            self._worker.quit()       # stops after the slice in progress

    def _check_unsaved(self, name: str) -> None:
        p = self.state.current
        if p is not None and p.image == name and self.state.unsaved_edits() is not None:
            raise ValueError("the labels layer has edits: Accept them, Propagate from them, or delete the layer")

    # -- running -------------------------------------------------------------------------
    def _run(self, job, total: int, desc: str, name: str, layer, volume: np.ndarray, axis: int, kind: str) -> None:
        self._stopped = False
        self._state = {"name": name, "layer": layer, "volume": volume, "axis": axis, "kind": kind, "t0": time.time(),
                       "labels": np.zeros(volume.shape, np.int32), "probs": None, "presence": [], "done": 0,
                       "prompts": None, "mapped": None, "error": None}
        self._bar = progress(total=max(total, 1), desc=desc)
        self.note.setText(f"{desc} …")
        for b in (self.all_btn, self.propagate_btn):
            b.setEnabled(False)
        self.stop_btn.setEnabled(True)
        self._worker = start_worker(job, self._finished, on_item=self._got)

    def _got(self, item) -> None:
        what, value = item
        s = self._state
        if what == "error":
            s["error"] = value
        elif what == "mapped":
            from ..workflow.class_map import unique_names

            s["mapped"], s["prompts"] = value, unique_names(value)
        elif what == "seeds":
            s["labels"], _, s["prompts"] = value[0].copy(), value[1], list(value[2])
        elif what == "slice":
            r = value
            view = np.moveaxis(s["labels"], s["axis"], 0)
            view[r.index] = r.labels
            if s["kind"] == "propose":
                if s["probs"] is None:
                    s["probs"] = np.zeros((len(r.probs), *s["volume"].shape), np.float16)
                np.moveaxis(s["probs"], s["axis"] + 1, 1)[:, r.index] = r.probs
            if r.presence is not None:     # the flow alone has no presence scores
                s["presence"].append(r.presence)
            s["done"] = r.done
            if self._bar is not None:
                self._bar.update(1)
            self.note.setText(f"slice {r.index}: {r.done}/{r.total} done")
            if self._worker is None and s.get("shown"):   # queued behind the finished signal
                self._show(s)

    def _finished(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._worker = None
        for b in (self.all_btn, self.propagate_btn):
            b.setEnabled(True)
        self.stop_btn.setEnabled(False)
        s = self._state
        if s["error"]:
            self.note.setText(f"⚠ {s['error']}")
            return
        if s["prompts"] is None or (s["kind"] == "propose" and s["probs"] is None):
            self.note.setText("Stopped before the first slice; nothing changed.")
            return
        if self._stopped and s["kind"] == "propose":
            self.note.setText(f"Stopped after {s['done']} slice(s); the other slices are empty.")
        self._show(s)

    def _show(self, s: dict) -> None:
        state, viewer = self.state, self.state.viewer
        s["shown"] = True
        name, prompts = s["name"], s["prompts"]
        presence = np.mean(s["presence"], 0) if s["presence"] else None
        out = proposal_layer_name(name)
        if out in viewer.layers and viewer.layers[out].ndim != 3:
            state.current = None           # replaced on purpose: not a draft
            viewer.layers.remove(out)
        probs = s["probs"] if s["kind"] == "propose" else None
        p = Proposal(layer=out, image=name, prompts=list(prompts), image_array=s["volume"], probs=probs,
                     presence=presence, fixed=None if probs is not None else s["labels"],
                     model_version=state.model_version, prompt="; ".join(prompts), tau=state.tau)
        show_labels(viewer, out, p.labels(), list(prompts), presence,
                    known_colors=state.class_colors(), scale=s["layer"].scale,
                    metadata={"image": name, "prompt": "; ".join(prompts), "model": state.model_version})
        state.current = p
        seconds = time.time() - s["t0"]
        verb = "Proposed" if s["kind"] == "propose" else "Propagated"
        self.note.setText(f"{verb} {'; '.join(prompts)} on {s['done']} slice(s) of {name} in {seconds:.1f} s. "
                          "Correct any slice, then Accept (stores the volume label).")
        state.say(f"{verb} on {name} along axis {s['axis']}: a 3-D labels layer.", cause="propose")
        if presence is not None:   # mean over slices
            state.presence_changed.emit("  ".join(f"■ {c}: {v:.2f}" for c, v in zip(prompts, presence)))
        if s["kind"] == "propose" and probs is not None:
            if s["mapped"] is not None:
                state.prompts_mapped.emit(s["mapped"])
            state.proposed.emit(p, float(mean_entropy(probs)), s["layer"], None)
