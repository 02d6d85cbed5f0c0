"""Boxes, clicks and "more like this": objects of any class, on images the model never saw.

Draw a box or click on the image's prompt layers and the mask appears by itself: every change
of those layers decodes in a worker on the cached embedding (LiteMedSAM's frozen prompt encoder
and mask decoder, class-agnostic). A single click offers candidate masks, best first; Next
candidate cycles through them. A further click corrects the mask on screen near itself, and
taking it back shows the mask before it. Commit paints the masks into the image's Labels layer
as new instances of the current class (a class the model does not know joins the project when
accepted) and clears the prompts for the next object. More like this proposes every further
region like the class's masks (this image's, else the project's accepted ones) where nothing is
marked yet.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from qtpy.QtWidgets import QCheckBox, QGroupBox, QLineEdit, QPushButton, QSpinBox, QVBoxLayout

from ..workflow.objects import MaskObject
from .message_line import MessageLine
from .prompt_layers import BOX, NEG, POS, add_prompt_layers, clear_prompts, read_prompts, show_pending
from .rows import button, hrow
from .spatial_commit import commit_objects, exemplar_masks, paint_more, project_exemplars
from .workers import start_worker


CLICK_STATES = 6   # the click object's latest states kept for taking clicks back (each holds its candidates)


@dataclass
class Pending:
    """A decoded object waiting for Commit; a click object keeps its candidate masks."""
    source: str                           # "box" or "click"
    candidates: list[tuple[np.ndarray, float]]
    pick: int = 0
    names: tuple[str, ...] = ()           # a click object's candidate kinds
    clicks: frozenset = frozenset()       # a click object's (row, col, label) clicks

    @property
    def mask(self) -> np.ndarray:
        return self.candidates[self.pick][0]

    @property
    def score(self) -> float:
        return self.candidates[self.pick][1]


class RefinePanel(QGroupBox):
    def __init__(self, state) -> None:
        super().__init__("Boxes, clicks, more like this")
        self.state = state          # dock_state.DockState: viewer, image and proposal on screen, Predictor
        self.session = state.session  # workflow/session.py: the project, model, Predictor
        self.image: str | None = None          # the image whose prompt layers are watched
        self.pending: list[Pending] = []
        self.latencies: list[float] = []       # seconds from a prompt change to its mask on screen
        self.worker_seconds: list[float] = []  # of which the worker's lock wait and decoding
        self._worker = None
        self._again = False
        self._asked_at = 0.0
        self._shown_for = -1.0                   # the prompt change whose first mask is on screen
        self.zoom_latencies: list[float] = []    # seconds from a prompt change to its zoomed box mask
        self._boxes: dict[tuple, tuple[np.ndarray, float]] = {}   # decoded boxes of this image
        self._clicks: dict[frozenset, Pending] = {}   # the click object's states, by their clicks
        self.layers_btn = button("Box / click layers", "Add a Shapes layer for boxes and Points layers for clicks inside (+) and "
                                                       "outside (−) the object, for the image on screen")
        self.class_edit = QLineEdit()
        self.class_edit.setPlaceholderText("class (default: the first in Classes)")
        self.class_edit.setToolTip("Objects are committed as this class; a new name becomes a project class "
                                   "when accepted")
        self.zoom = QCheckBox("zoom")
        self.zoom.setChecked(True)   # the box benchmark's setting: the whole image and the crop, averaged
        self.zoom.setToolTip("Also decode each box on a crop around it at the encoder's full resolution: sharper "
                             "masks, but one encoder pass per new box (off: the decoder only, on the image's "
                             "cached embedding: faster, coarser)")
        self.commit_btn = QPushButton("Commit (Shift+C)")
        self.cycle_btn = QPushButton("Next candidate (Shift+X)")
        self.more_btn = button("More like this (Shift+M)", "Propose every further region like this class's masks: this image's, "
                                                           "else the project's accepted labels")
        self.max_exemplars = QSpinBox()
        self.max_exemplars.setRange(1, 16)
        self.max_exemplars.setValue(4)
        self.max_exemplars.setPrefix("from ")
        self.max_exemplars.setSuffix(" labels")
        self.max_exemplars.setToolTip("At most this many accepted labels per class (newest first) serve as "
                                      "exemplars: for More like this on an image without the class, and for "
                                      "the exemplar expert of batch proposals")
        self.message = MessageLine()
        state.image_changed.connect(lambda _: self.message.clear())   # its notes are about the image before
        lay = QVBoxLayout(self)
        lay.addWidget(hrow(self.layers_btn, self.class_edit, self.zoom, stretch=self.class_edit))
        lay.addWidget(hrow(self.commit_btn, self.cycle_btn))
        lay.addWidget(hrow(self.more_btn, self.max_exemplars, stretch=self.more_btn))
        lay.addWidget(self.message)
        self.layers_btn.clicked.connect(self.add_prompt_layers)
        self.commit_btn.clicked.connect(self.commit)
        self.cycle_btn.clicked.connect(self.next_candidate)
        self.more_btn.clicked.connect(self.more_like_this)

    # -- layers ----------------------------------------------------------------------------
    def current_class(self) -> str:
        typed = self.class_edit.text().strip()
        if typed:
            return typed
        try:
            from ..model.text import split_prompts   # torch: loaded by the model's worker by now

            return split_prompts(self.state.prompt_text)[0]
        except ValueError:
            return ""

    def _image_array(self, name: str) -> np.ndarray | None:
        layer = self.state.viewer.layers[name] if name in self.state.viewer.layers else None
        if layer is None or np.ndim(layer.data) - (1 if layer.rgb else 0) != 2:
            return None
        return np.asarray(layer.data)

    def add_prompt_layers(self) -> None:
        w = self.state
        name = w.image_name or (w.current.image if w.current is not None else "")
        if not name or self._image_array(name) is None:
            self.message.warn("open a 2-D image first: boxes and clicks work on 2-D images", cause="image")
            return
        if name != self.image:
            self._forget(name)
        layers = add_prompt_layers(w.viewer, name)
        for key in (BOX, POS, NEG):
            if not layers[key].metadata.get("promptseg_watched"):
                layers[key].events.data.connect(lambda event, n=name: self._on_prompt_changed(n, event))
                layers[key].metadata["promptseg_watched"] = True
        w.viewer.layers.selection.active = layers[BOX]
        layers[BOX].mode = "add_rectangle"
        self._warm(name)
        self.message.say(f"Draw a box on '{layers[BOX].name}', or click on '{layers[POS].name}' (outside the "
                         f"object: '{layers[NEG].name}'): the mask appears by itself. {self._commit_hint(1)}",
                         cause="layers")

    def _warm(self, image: str) -> None:
        """Embed the image for boxes now (a whole-image box, its answer dropped), so that the
        first box the annotator draws costs only the decoder."""
        img = self._image_array(image)
        if self._worker is not None or img is None:
            return
        def warm(predictor) -> None:
            predictor.set_image(img)
            predictor.predict_boxes([(0, 0, img.shape[0] - 1, img.shape[1] - 1)], zoom=False)

        self._worker = start_worker(self._job(warm), self._decoded,
                                    on_return=lambda res: res and self.message.error(res))

    def _forget(self, image: str) -> None:
        """Drop the pending objects and decoded prompts: another image, or the objects committed."""
        self.image, self.pending, self._boxes, self._clicks = image, [], {}, {}

    def _on_prompt_changed(self, image: str, event) -> None:
        action = str(getattr(event, "action", "changed"))
        if action in ("adding", "changing", "removing"):
            return
        if image != self.image:
            self._forget(image)
        self._asked_at = time.perf_counter()
        # a rectangle being drawn has no size until the drag ends: not worth an error message
        self.decode(quiet=bool(getattr(getattr(event, "source", None), "_is_creating", False)))

    # -- decoding --------------------------------------------------------------------------
    def decode(self, quiet: bool = False) -> None:
        """Decode the prompt layers' boxes and clicks in a worker (the latest layers win);
        ``quiet``: leave bad prompts out without a message (a shape still being drawn)."""
        if self._worker is not None:
            self._again = True
            return
        image = self.image
        img = self._image_array(image) if image else None
        if img is None:
            return
        prompts = read_prompts(self.state.viewer, image, img.shape[:2])
        if prompts.problems and not quiet:
            self.message.error("; ".join(prompts.problems) + " — left out, nothing changed", cause="prompt")
        elif not prompts.problems:
            self.message.clear_cause("prompt")
        if not len(prompts.points) and not prompts.problems:
            self._clicks = {}                   # no click object: the next click starts a new one
        if prompts.empty:
            self.pending = []
            show_pending(self.state.viewer, image, [])
            return
        known = dict(self._boxes)
        prev = next((p for p in self.pending if p.source == "click"), None)
        points, labels, shown = _corrected(prev, prompts.points, prompts.labels)
        # clicks seen before keep their object, an edited mask included: unchanged clicks while
        # boxes change, or the state before a click that was taken back
        keys = frozenset(_click_keys(points, labels))
        seen = self._clicks.get(keys)
        same = [seen] if seen is not None else []
        zoom = self.zoom.isChecked()
        # with zoom, a new box shows the whole image's answer at once, then the sharper one once
        # its crop is embedded (an encoder pass)
        passes = [False, True] if zoom and any((b, True) not in known for b in prompts.boxes) else [zoom]

        def decode(predictor, zoomed: bool):
            t0 = time.perf_counter()             # the worker's own time (waiting for the lock aside)
            predictor.set_image(img)             # cache hit after a proposal
            todo = [b for b in prompts.boxes if (b, zoomed) not in known]
            if todo:
                r = predictor.predict_boxes(todo, zoom=zoomed)
                known.update({(b, zoomed): (m, float(s)) for b, m, s in zip(todo, r.masks, r.scores)})
            if len(points) and not same:      # decoded once, for the first of the passes
                r = predictor.predict_points(points, labels, shown=shown)
                same.append(Pending("click", list(zip(r.candidates, r.candidate_scores.tolist())),
                                    names=r.candidate_names, clicks=keys))
            return prompts, known, same[0] if same else None, zoomed, time.perf_counter() - t0

        asked = self._asked_at
        jobs = [self._job(lambda pr, z=z: decode(pr, z)) for z in passes]

        def run():
            for job in jobs:
                res = job()
                yield res
                if isinstance(res, str):
                    return

        self._worker = start_worker(run, self._decoded, on_item=lambda res, n=image: self._show(n, res, asked))

    def _job(self, work):
        """A worker job: ``work(predictor)`` under the session's lock; an error comes back as its text."""
        session, state = self.session, self.state

        def job():
            try:
                with session.lock:
                    return work(state.predictor())
            except (ValueError, RuntimeError, OSError) as exc:
                return str(exc)
        return job

    def _decoded(self) -> None:
        self._worker = None
        if self._again:
            self._again = False
            self.decode()

    def _show(self, image: str, res, asked: float) -> None:
        if isinstance(res, str):
            self.message.error(f"{res} — nothing changed", cause="prompt")
            return
        if image != self.image:
            return
        prompts, known, click, zoom, in_worker = res
        sharper = zoom and any((b, False) in known for b in prompts.boxes) and self._shown_for == asked
        if sharper and self._asked_at != asked:
            return          # the prompts changed (or were committed) while the crop was embedded
        self._boxes = known
        old = next((p for p in self.pending if p.source == "click"), None)
        self.pending = [Pending("box", [known[(b, zoom)]]) for b in prompts.boxes]
        if click:
            if click.clicks not in self._clicks:
                # newly decoded: a corrected mask leads; else the kind of candidate picked before stays
                self._clicks[click.clicks] = click
                while len(self._clicks) > CLICK_STATES:
                    self._clicks.pop(next(iter(self._clicks)))
                pick = old.pick if old is not None else 0
                click.pick = 0 if click.names[0] == "edited" or pick >= len(click.candidates) else pick
            self.pending.append(click)
        show_pending(self.state.viewer, image, [p.mask for p in self.pending])
        seconds = time.perf_counter() - self._asked_at
        if sharper:
            self.zoom_latencies.append(seconds)
        else:
            self.latencies.append(seconds)
            self.worker_seconds.append(in_worker)
        self._shown_for = asked
        what = [f"{sum(p.source == 'box' for p in self.pending)} box(es)"] if prompts.boxes else []
        if click:
            what.append(self._candidate_text())
        done = (f"→ mask in {1000 * self.latencies[-1]:.0f} ms, sharpened with zoom in {1000 * seconds:.0f} ms"
                if sharper else f"→ mask in {1000 * seconds:.0f} ms")
        self.message.say(f"{', '.join(what)} {done}. {self._commit_hint(len(self.pending))}", cause="mask")

    def _commit_hint(self, n: int) -> str:
        it, name = "them" if n > 1 else "it", self.current_class()
        return f"Commit (Shift+C) adds {it} as '{name}'." if name else f"Type the class, then Commit (Shift+C) adds {it}."

    def _candidate_text(self) -> str:
        p = next(p for p in self.pending if p.source == "click")
        # the decoder predicts no quality for an edit of the shown mask
        what = ("the shown mask corrected at the last click" if p.names[p.pick] == "edited"
                else f"predicted quality {p.score:.2f}")
        return f"click candidate {p.pick + 1}/{len(p.candidates)} ({what})"

    def next_candidate(self) -> None:
        """Show the click object's next candidate mask."""
        click = next((p for p in self.pending if p.source == "click"), None)
        if click is None:
            self.message.warn("no click object: click inside an object first", cause="candidate")
            return
        click.pick = (click.pick + 1) % len(click.candidates)
        show_pending(self.state.viewer, self.image, [p.mask for p in self.pending])
        self.message.say(self._candidate_text(), cause="candidate")

    # -- commit and more like this ------------------------------------------------------------
    def commit(self) -> None:
        """Paint the pending masks into the image's Labels layer as new instances of the current
        class, then clear the prompt layers for the next object."""
        name = self.current_class()
        if self._worker is not None:
            self.message.warn("the mask is still being decoded: commit again in a moment", cause="commit")
            return
        if not self.pending:
            self.message.warn("nothing to commit: draw a box or click on the object first", cause="commit")
            return
        if not name:
            self.message.warn("type the object's class (here or in Classes) before committing", cause="commit")
            return
        objects = [MaskObject(p.mask, name, p.source, p.score) for p in self.pending if p.mask.any()]
        n = commit_objects(self.state, self.image, self._image_array(self.image), objects)
        image = self.image
        self._forget(image)
        clear_prompts(self.state.viewer, image)
        self.message.say(f"committed {n} '{name}' object(s) in {image}: draw the next one, or More like this; "
                         "Accept stores them", cause="commit")

    def more_like_this(self) -> None:
        """Propose every further region of the current class in this image (a worker)."""
        name, image = self.current_class(), self.state.image_name
        img = self._image_array(image) if image else None
        if self._worker is not None:
            return
        if img is None or not name:
            self.message.warn("open a 2-D image and name the class first", cause="more")
            return
        here = exemplar_masks(self.state, image, name) + [p.mask for p in self.pending]
        others = project_exemplars(self.session.project, name, image, self.max_exemplars.value()) if not here else []
        if not here and not others:
            self.message.warn(f"no '{name}' to start from: draw a box or click on one and Commit, or accept "
                              f"labels of '{name}' in the project", cause="more")
            return
        def more(predictor):
            ex = None
            for other_img, mask in others:
                e = predictor.exemplars(mask, image=other_img)
                ex = e if ex is None else ex.merged(e)
            return predictor.more_like_this(predictor.exemplars(here, image=img) if here else ex, image=img)

        job = self._job(more)
        self.more_btn.setEnabled(False)
        self.message.say(f"looking for more '{name}' like the {len(here) or len(others)} example(s) …", cause="more")
        self._worker = start_worker(job, self._more_done, on_return=lambda res: self._show_more(image, img, name, res))

    def _more_done(self) -> None:
        self.more_btn.setEnabled(True)
        self._decoded()

    def _show_more(self, image: str, img: np.ndarray, name: str, res) -> None:
        if isinstance(res, str):
            self.message.error(f"{res} — nothing changed", cause="more")
            return
        n, skipped = paint_more(self.state, image, img, name, res.instances)
        self.message.say(f"More like this: {n} new '{name}' instance(s) where nothing was marked"
                         + (f" ({skipped} found over marked objects left out)" if skipped else "")
                         + "; erase wrong ones, then Accept", cause="more")


def _click_keys(points: np.ndarray, labels: np.ndarray) -> list[tuple[float, float, int]]:
    return [(float(r), float(c), int(lab)) for (r, c), lab in zip(points, labels)]


def _corrected(prev: Pending | None, points: np.ndarray, labels: np.ndarray):
    """The clicks with the one added since ``prev`` last, and ``prev``'s mask on screen, which
    that click corrects; the clicks as they are and no mask unless exactly one was added."""
    if prev is None or len(points) != len(prev.clicks) + 1:
        return points, labels, None
    new = [i for i, key in enumerate(_click_keys(points, labels)) if key not in prev.clicks]
    if len(new) != 1:
        return points, labels, None
    order = [i for i in range(len(points)) if i != new[0]] + new
    return points[order], labels[order], prev.mask
