"""One annotation session: a project (or none), the model version in use and the Predictor
for it, shared by the CLI, the dock's panels and its background work.

The Predictor is loaded on first use and used from several threads; every set_image +
predict pair runs under ``lock``.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from .exemplars import ExemplarVectors, exemplar_sources

if TYPE_CHECKING:
    from .propose import Proposed

# The model's modules (torch and the text encoder) are imported where they are used, so that
# a GUI can create a session at once and load the model later in a worker thread.


def active_checkpoint(project) -> tuple[str | None, int | None]:
    """(model folder, version) of the project's active model; (None, None) for the default model."""
    active = project.active_model() if project is not None else None
    return (str(project.model_dir(active.version)), active.version) if active else (None, None)


def load_predictor(checkpoint: str | Path | None, device: str = "cpu", project=None,
                   encoder_precision: str = "float32", decoder_precision: str = "float32"):
    """A Predictor for ``checkpoint`` (None: the default model) that reads and fills the
    project's embedding cache, the one the training rounds fill."""
    from ..inference.predictor import Predictor

    p = Predictor.load(checkpoint, device=device, encoder_precision=encoder_precision,
                       decoder_precision=decoder_precision)
    if project is not None:
        p.use_embedding_cache(project.embeddings_dir)
    return p


class AnnotationSession:
    def __init__(self, checkpoint: str | None = None, project=None) -> None:
        self.checkpoint = checkpoint
        self.model_version: int | None = None
        self.project = project
        self.lock = threading.RLock()
        self.exemplars = ExemplarVectors()
        self._predictor = None
        self._key: tuple | None = None

    @classmethod
    def for_project(cls, project) -> "AnnotationSession":
        """A session on ``project``'s active model."""
        s = cls(project=project)
        s.checkpoint, s.model_version = active_checkpoint(project)
        return s

    # -- the model ------------------------------------------------------------------------
    def predictor(self, device: str = "cpu", precisions: tuple[str, str] = ("float32", "float32")):
        """The Predictor for the model in use on ``device`` at (encoder, decoder) ``precisions``,
        loaded on first use or when any of them changed."""
        with self.lock:
            key = (self.checkpoint, device, *precisions, self.project.root if self.project is not None else None)
            if self._predictor is None or self._key != key:
                self._predictor = load_predictor(self.checkpoint, device, self.project, *precisions)
                self._key = key
            return self._predictor

    @property
    def loaded_predictor(self):
        """The Predictor if one is loaded (None before the first proposal)."""
        return self._predictor

    def use_checkpoint(self, path: str | None, version: int | None) -> None:
        """Hot-load a model version: the next predictor() loads it."""
        with self.lock:
            self.checkpoint, self.model_version = path, version
            self._predictor = None

    def open_project(self, project) -> None:
        """Work in ``project`` on its active model (or the current one when it has none)."""
        with self.lock:
            self.project = project
            path, version = active_checkpoint(project)
            if path is not None:
                self.checkpoint, self.model_version = path, version
            self._predictor = None

    # -- the workflow ---------------------------------------------------------------------
    def class_synonyms(self) -> dict[str, list[str]]:
        return {c.name: list(c.synonyms) for c in self.project.classes()} if self.project is not None else {}

    def exemplar_vectors(self, predictor, prompts: list[str], exclude: str | None, limit: int) -> dict[str, np.ndarray]:
        """Exemplar vectors of ``prompts`` from the project's accepted labels (call under ``lock``)."""
        sources = exemplar_sources(self.project, prompts, exclude, limit)
        return self.exemplars.vectors(predictor, self.project, sources) if any(sources.values()) else {}

    def propose(self, image: np.ndarray, prompts: list[str], tau: float | None = None, device: str = "cpu",
                precisions: tuple[str, str] = ("float32", "float32"), map_names: bool = True,
                exemplar_limit: int = 0, exclude: str | None = None,
                progress: Callable[[int, int], None] | None = None) -> Proposed:
        """Map, decode and score ``prompts`` on ``image``; with ``exemplar_limit`` the exemplar
        expert (accepted labels of other images than ``exclude``) joins the disagreement;
        ``progress(done, total)`` hears of the embedding's tiles."""
        from ..inference.vocabulary import accepted_classes
        from .propose import propose

        with self.lock:
            predictor = self.predictor(device, precisions)
            predictor.project_classes = accepted_classes(self.project) if self.project is not None else set()
            ex = (lambda names: self.exemplar_vectors(predictor, names, exclude, exemplar_limit)) \
                if exemplar_limit else None
            return propose(predictor, image, prompts, self.class_synonyms() if map_names else {}, tau, map_names, ex,
                           progress)

    def store(self, image, proposed: Proposed, labels: np.ndarray | None = None, prompt: str | None = None,
              model_version: int | None = None):
        """Register the prompts as classes / synonyms and store the proposal and its scores
        (``labels``: the label map to store, default the prediction's). Returns (label record
        or None, problems registering prompts)."""
        from .propose import register_prompts, store_proposal

        errors = register_prompts(self.project, proposed.mapped)
        r = proposed.result
        lab = store_proposal(self.project, image, r.labels if labels is None else labels, list(r.prompts),
                             proposed.uncertainty, proposed.disagreement,
                             self.model_version if model_version is None else model_version, prompt)
        return lab, errors
