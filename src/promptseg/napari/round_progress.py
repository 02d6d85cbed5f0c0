"""One determinate progress bar across a whole training round: first the images it embeds
(which group, how many of how many), then its optimiser steps, with an ETA measured from the
steps done. Mirrored in napari's activity dock (``napari.utils.progress``)."""
from __future__ import annotations

from qtpy.QtWidgets import QProgressBar


def _eta(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


class RoundProgress:
    """Reads a round's JSON events into a bar value (images embedded + steps done, out of
    images to embed + steps) and a line of text; ``text`` is None for events it does not show."""

    def __init__(self, bar: QProgressBar) -> None:
        self.bar = bar
        self.bar.setFormat("%p%")
        self.napari_bar = None
        self.to_embed = 0
        self.steps = 0
        self._first_step: tuple[int, float] | None = None   # (step, time) of the first step event
        self._embed_start: float | None = None

    def start(self, steps: int) -> None:
        """A round starts; ``steps`` is what was asked for (the round's plan may correct it)."""
        self.to_embed, self.steps = 0, steps
        self._first_step = self._embed_start = None
        self._set_range()
        self.bar.setValue(0)
        self.close_napari()
        try:
            from napari.utils import progress
        except ImportError:
            return
        self.napari_bar = progress(total=max(1, steps), desc="PromptSeg round: starting")

    def _set_range(self) -> None:
        self.bar.setRange(0, max(1, self.to_embed + self.steps))
        if self.napari_bar is not None:
            self.napari_bar.total = max(1, self.to_embed + self.steps)

    def _set_value(self, value: int, text: str) -> None:
        self.bar.setValue(min(value, self.bar.maximum()))
        if self.napari_bar is not None:
            self.napari_bar.set_description(f"PromptSeg round: {text}")
            self.napari_bar.update(min(value, self.napari_bar.total) - self.napari_bar.n)

    def on_event(self, ev: dict) -> str | None:
        kind = ev.get("event")
        if kind == "plan":
            self.to_embed = int(ev.get("to_embed") or 0)
            self.steps = int(ev.get("steps") or self.steps)
            self._embed_start = ev.get("time")
            self._set_range()
            return f"embedding {self.to_embed} images before training" if self.to_embed else None
        if kind == "embed":
            group, done, total = ev["group"], ev["done"], ev["total"]
            text = f"embedding {group} images: {done}/{total} done"
            if ev.get("image"):
                text += f" (last: {ev['image']})"
            left = self._embed_left(ev)
            text += f", about {_eta(left)} left for embedding" if left is not None else ""
            self._set_value(int(ev.get("embedded", 0)), text)
            return text
        if kind == "start":
            self.steps = int(ev.get("steps") or self.steps)
            self._set_range()
            text = f"training {self.steps} steps on {ev.get('train_items', '?')} labelled views"
            text += f" ({ev['route']})" if ev.get("route") else ""   # which parts of the model learn
            self._set_value(self.to_embed, text)
            return text
        if kind == "step":
            step, now = int(ev["step"]), float(ev.get("time", 0.0))
            if self._first_step is None:
                self._first_step = (step, now)
            text = f"step {step}/{self.steps}  loss {ev['total']:.3f}"
            first, t0 = self._first_step
            if step > first and now > t0:   # the rate of the steps done since the first report
                text += f"  ETA {_eta((self.steps - step) * (now - t0) / (step - first))}"
            self._set_value(self.to_embed + step, text)
            return text
        return None

    def _embed_left(self, ev: dict) -> float | None:
        """Seconds left to embed, from the rate of the images embedded so far (None before one is)."""
        done, now = int(ev.get("embedded", 0)), ev.get("time")
        if not done or now is None or self._embed_start is None or now <= self._embed_start:
            return None
        return (self.to_embed - done) * (now - self._embed_start) / done

    def finish(self, done: bool) -> None:
        if done:
            self.bar.setValue(self.bar.maximum())
        self.close_napari()

    def close_napari(self) -> None:
        if self.napari_bar is not None:
            self.napari_bar.close()
            self.napari_bar = None
