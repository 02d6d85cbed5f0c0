"""Getting ready before the first Propose, off napari's GUI thread.

- ``ModelLoader``: imports the model's dependencies and loads the session's Predictor in a
  worker as soon as the dock opens (and again when another model version is chosen), so the
  GUI thread never pays for either. The text encoder's modules are left to the first prompt
  that is not in the checkpoint's prompt cache.
- ``ScreenEmbedder``: embeds the image on screen as soon as it is chosen and the model is
  loaded, so a Propose on it only runs the text encoder and the decoder.

Both hold ``session.lock`` while they use the Predictor; a Propose started meanwhile waits
for them in its own worker, never on the GUI thread.
"""
from __future__ import annotations

import threading

import numpy as np
from qtpy.QtCore import QTimer

from .dock_state import DockState
from .gil_friendly import StepAside, collector_paused, preload_torch_libraries
from .plain_imports import plain_imports
from .workers import start_worker


DEVICES = ("auto", "cpu", "cuda", "mps")


def fast_choices() -> dict[str, tuple[str, str] | None]:
    """Each device's Fast mode precisions (None: none, or the device is not here)."""
    from ..inference.predictor import fast_precisions

    out: dict[str, tuple[str, str] | None] = {}
    for device in DEVICES:
        try:
            out[device] = fast_precisions(device)
        except ValueError:
            out[device] = None
    return out


class ModelLoader:
    def __init__(self, state: DockState) -> None:
        self.state = state
        self._worker = None
        self._again = False          # asked again while loading (another device or version)
        self.thread: int | None = None   # the thread the last load ran in
        self.fast: dict[str, tuple[str, str] | None] = {}   # device -> its Fast mode precisions
        self.aside = StepAside()
        self._heartbeat = QTimer()           # tells the loading thread when the GUI thread is in a turn
        self._heartbeat.setInterval(4)
        self._heartbeat.timeout.connect(self.aside.beat)

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def load(self) -> None:
        """Load the session's model on the dock's device in a worker (reports through the state's
        model_loading / model_ready / model_failed signals)."""
        if self._worker is not None:
            self._again = True
            return
        state = self.state
        device = state.device

        def job():
            self.thread = threading.get_ident()
            try:
                with collector_paused():     # the interpreter lock stays free for the GUI (gil_friendly.py)
                    preload_torch_libraries()
                    # not through PySide6's import hook (plain_imports.py)
                    with plain_imports():
                        with self.aside.imports():    # aside while the GUI is in a turn, not under the session lock
                            from ..inference.predictor import preload_modules

                            preload_modules(text=False)   # the cached prompts (nucleus, …) need no text encoder
                        with state.session.lock:
                            state.predictor(device)
                    return fast_choices()    # asked here: the first answer takes a while in torch
            except (ValueError, RuntimeError, OSError, ImportError) as exc:
                return str(exc)          # a value, not the exception: superqt would re-raise it

        state.model_loading.emit()
        self.aside.beat()
        self._heartbeat.start()
        self._worker = start_worker(job, self._finished, on_return=self._returned)

    def _returned(self, result: dict | str) -> None:
        if isinstance(result, dict):
            self.fast = result
            self.state.loaded = True
            self.state.model_ready.emit()
        else:
            self.state.model_failed.emit(result)

    def _finished(self) -> None:
        self._worker = None
        self._heartbeat.stop()
        if self._again:
            self._again = False
            self.load()


class ScreenEmbedder:
    def __init__(self, state: DockState) -> None:
        self.state = state
        self._worker = None
        self._again = False
        self.embedded: list[str] = []     # image names embedded, in order

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def embed(self, *_) -> None:
        """Embed the image (or the slice) on screen, once the model is loaded; 2-D only."""
        state = self.state
        if not state.loaded:
            return                        # model_ready calls this again
        if self._worker is not None:
            self._again = True
            return
        layer = state.image_layer()
        if layer is None or np.ndim(layer.data) - (1 if layer.rgb else 0) not in (2, 3):
            return
        name, image, device = layer.name, state.image_for(layer), state.device

        def job():
            try:
                with state.session.lock:
                    predictor = state.predictor(device)
                    predictor.set_image(image)      # a cache hit if it is embedded already
                return name
            except (ValueError, RuntimeError, OSError) as exc:
                return RuntimeError(f"{name}: {exc}")  # Propose says it again, next to the button

        state.say(f"embedding {name} in the background …", cause="embedding")
        self._worker = start_worker(job, self._finished, on_return=self._returned)

    def _returned(self, result) -> None:
        if isinstance(result, str):
            self.embedded.append(result)
        current = self.state.current
        if isinstance(result, str) and (current is None or current.image != result):
            self.state.say(f"{result} is ready: type a class and Propose.", cause="embedding")
        else:                              # a proposal is on screen already: nothing to add
            self.state.clear("embedding")

    def _finished(self) -> None:
        self._worker = None
        if self._again:
            self._again = False
            self.embed()
