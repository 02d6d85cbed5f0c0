"""Background work over the project's image list, off napari's GUI thread.

- ``Prefetcher``: embeds the next suggested images (the order Next would take) into the
  predictor's cache, so a prompt on the next image only runs the decoder. Keyed by image and
  model hash: a new model version starts over.
- ``BatchProposer``: proposes the current prompt on every image not accepted yet, storing each
  proposal, its uncertainty and expert disagreement (so Next can rank by them), with a napari
  progress bar and Stop; after a round, ``refresh`` re-proposes the untouched proposals.
"""
from __future__ import annotations

import time

import numpy as np
from napari.utils import progress

from ..workflow.scoring import upcoming
from .dock_state import DockState
from .workers import GeneratorOwner


class Prefetcher(GeneratorOwner):
    def __init__(self, state: DockState, ahead: int = 2) -> None:
        super().__init__()
        self.state = state           # the dock's shared state: device, image on screen, messages
        self.session = state.session
        self.ahead = ahead
        self.embedded: set[tuple[str, str]] = set()   # (model hash, image name)
        self.log: list[str] = []                      # image names embedded, in order

    def schedule(self) -> None:
        """Embed the upcoming images (no-op while running or without a project)."""
        proj = self.session.project
        if proj is None or self._worker is not None or self.ahead <= 0 or self.session.loaded_predictor is None:
            return                      # (no predictor yet: the first Propose loads it)
        state = self.state
        current = state.current.image if state.current else state.image_name
        names = upcoming(proj.image_status(), current or None, self.ahead)
        if not names:
            return
        device = state.device

        def job():
            for name in names:
                try:
                    image = proj.read_image(name)
                    if np.ndim(image) - (1 if np.shape(image)[-1] in (3, 4) else 0) != 2:
                        continue                      # volumes: the slice is only known when shown
                    with self.session.lock:
                        predictor = state.predictor(device)
                        key = (predictor.model_hash, name)
                        if key in self.embedded:
                            continue
                        predictor.set_image(image)
                    yield key
                except Exception as exc:  # a bad image must not stop the others; say so
                    yield ("error", f"{name}: {exc}")

        self._launch(job)

    def _got(self, key) -> None:
        if key[0] == "error":
            self.state.warn(f"background embedding skipped {key[1]}", cause="prefetch")
            return
        self.embedded.add(key)
        self.log.append(key[1])

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.quit()


class BatchProposer(GeneratorOwner):
    """Propose on all not-accepted images of the project; one napari progress bar; Stop."""

    def __init__(self, state: DockState) -> None:
        super().__init__()
        self.state = state           # the dock's shared state: prompt, device, threshold
        self.session = state.session
        self._bar = None
        self.done: list[str] = []
        self.processed = 0
        self.total = 0
        self._stop_requested = False

    def start(self) -> str:
        """Propose the typed classes on every image without an accepted label."""
        from ..model.text import split_prompts

        proj = self.session.project
        if proj is None:
            return "⚠ open a project first"
        try:
            prompts = split_prompts(self.state.prompt_text)
        except ValueError as exc:
            return f"⚠ {exc}"
        names = [r["name"] for r in proj.image_status() if r["status"] in ("unlabelled", "proposed")]
        if not names:
            return "Nothing to propose: every image has an accepted label."
        return self._start({n: prompts for n in names}, f"proposing {'; '.join(prompts)}", map_names=True)

    def refresh(self) -> str:
        """After a new model version: propose again on every image whose proposal the annotator
        has not touched (status "proposed"), with the classes of that proposal."""
        proj = self.session.project
        if proj is None:
            return "⚠ open a project first"
        jobs = {}
        for r in proj.image_status():
            if r["status"] == "proposed":
                _, classes = proj.read_label(proj.latest_label(r["name"], ("proposal",)))
                jobs[r["name"]] = list(classes)
        if not jobs:
            return ""
        return self._start(jobs, "refreshing untouched proposals with the new model", map_names=False)

    def _start(self, jobs: dict[str, list[str]], what: str, map_names: bool) -> str:
        state, session = self.state, self.session
        proj = session.project
        if self._worker is not None:
            return "a batch is already running"
        device, tau, version = state.device, state.tau, session.model_version
        precisions = state.precisions(device)
        n_exemplars = state.exemplar_limit
        self.done, self.processed, self.total, self._stop_requested = [], 0, len(jobs), False
        self._bar = progress(total=len(jobs), desc=f"PromptSeg: {what}")

        def job():
            for name, prompts in jobs.items():
                t0 = time.perf_counter()
                try:
                    image = proj.read_image(name)
                    if np.ndim(image) - (1 if np.shape(image)[-1] in (3, 4) else 0) != 2:
                        yield name, None, "a volume: open it and use All slices"
                        continue
                    # with the exemplar expert: the decoder prompted with features under accepted labels
                    proposed = session.propose(image, prompts, tau, device, precisions, map_names=map_names,
                                               exemplar_limit=n_exemplars, exclude=name)
                    yield name, (proposed, time.perf_counter() - t0, version), None
                except (ValueError, RuntimeError, OSError) as exc:
                    yield name, None, str(exc)

        self._launch(job)
        return f"{what[0].upper()}{what[1:]}: {len(jobs)} image(s) in the background …"

    def _got(self, item) -> None:
        from ..project import ProjectError
        from ..workflow.propose import store_proposal

        name, res, err = item
        proj = self.session.project
        msg = ""
        if res is not None and proj is not None:
            proposed, seconds, version = res
            r, unc = proposed.result, proposed.uncertainty
            try:
                store_proposal(proj, name, r.labels, list(r.prompts), unc, proposed.disagreement, version)
                self.done.append(name)
                self.state.replace_if_untouched(name, r, version)
            except ProjectError as exc:
                err = str(exc)
            msg = f"{name}: uncertainty {unc:.3f} ({seconds:.1f} s)"
        self.processed += 1
        if self._bar is not None and self._worker is not None:
            self._bar.update(1)
        self.state.images_changed.emit()
        if self._worker is None:            # a result queued behind the worker's finished signal
            self.state.batch_finished.emit(self._summary())
            return
        self.state.batch_note.emit(
            f"{len(self.done)}/{self.total} proposed" + (f" — {msg}" if msg else "")
            + (f" — ⚠ {name}: {err}" if err else ""))

    def stop(self) -> None:
        if self._worker is not None:
            self._stop_requested = True
            self._worker.quit()       # stops after the image in progress

    def _finished(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._worker = None
        self.state.batch_finished.emit(self._summary())

    def _summary(self) -> str:
        stopped = self._stop_requested and self.processed < self.total
        return (f"{'Stopped' if stopped else 'Done'}: {len(self.done)}/{self.total} image(s) proposed; "
                "Next now ranks them by uncertainty and expert disagreement.")
