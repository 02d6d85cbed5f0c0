"""Retrain monitoring: a live loss / validation-Dice plot and the table of past rounds.

The plot follows the round's JSON lines (``step`` events: ``total`` loss; ``eval`` events:
``dice``); the table is read from the project (rounds, models, corrected labels).
"""
from __future__ import annotations

import math
import time

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

ROUND_COLUMNS = ("When", "Labels", "Dice", "Status", "Model", "Edited")
BG, FG, LOSS, DICE = "#262930", "#d6d6d6", "#6fa8ff", "#ff6b81"   # napari dark theme colours


class LossPlot(QWidget):
    """Loss per step (left axis) and validation Dice (right axis) of the running round.

    Cheap on the GUI thread: matplotlib is imported and the figure made only when the plot is
    first shown (the dock opens without either), fixed margins (no constrained layout), the two
    lines are updated in place, redraws are coalesced to at most one per ``MIN_REDRAW_S``, and
    none is made while the plot is hidden."""

    MIN_REDRAW_S = 0.5

    def __init__(self) -> None:
        super().__init__()
        QVBoxLayout(self).setContentsMargins(0, 0, 0, 0)
        self.canvas = None               # the matplotlib canvas, made when first shown
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._redraw)
        self._last_draw = 0.0
        self.setMinimumHeight(150)
        self.reset()

    def _make_canvas(self) -> None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(3.2, 1.9), dpi=90, facecolor=BG)
        self.canvas = FigureCanvasQTAgg(figure)
        figure.subplots_adjust(left=0.17, right=0.83, bottom=0.22, top=0.95)
        self.ax = figure.add_subplot(111)
        self.ax_dice = self.ax.twinx()
        ax, ax2 = self.ax, self.ax_dice
        ax.set_xlabel("step", fontsize=8, color=FG)
        ax.set_ylabel("loss", fontsize=8, color=LOSS)
        ax2.set_ylabel("val Dice", fontsize=8, color=DICE)
        ax2.set_ylim(-0.04, 1.04)
        ax.set_facecolor(BG)
        for a in (ax, ax2):
            a.tick_params(labelsize=7, colors=FG)
            for spine in a.spines.values():
                spine.set_color("#5a5f6b")
        (self._loss_line,) = ax.plot([], [], color=LOSS, lw=1.2)
        (self._dice_line,) = ax2.plot([], [], "o-", color=DICE, ms=4)
        self._dice_text = ax2.annotate("", (0, 0), fontsize=7, color=DICE, textcoords="offset points",
                                       xytext=(-18, 5))
        self._empty = ax.text(0.5, 0.5, "", ha="center", va="center", fontsize=8,
                              transform=ax.transAxes, color="gray")
        self.layout().addWidget(self.canvas)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self.canvas is None:
            self._make_canvas()
        self._redraw()

    def reset(self, empty_text: str = "no round running yet") -> None:
        """Clear the curves; ``empty_text`` shows until the first point arrives."""
        self.steps: list[int] = []
        self.loss: list[float] = []
        self.dice: list[tuple[int, float]] = []
        self.empty_text = empty_text
        self._redraw()

    def add_event(self, ev: dict) -> None:
        kind = ev.get("event")
        if kind == "step" and "total" in ev:
            loss = float(ev["total"])
            if math.isfinite(loss):
                self.steps.append(int(ev["step"]))
                self.loss.append(loss)
                self._schedule()
        elif kind == "eval" and ev.get("dice") is not None:
            step = int(ev.get("step", self.steps[-1] if self.steps else 0))
            self.dice.append((step, float(ev["dice"])))
            self._schedule()

    def _schedule(self) -> None:
        if not self._timer.isActive():
            wait = max(0.0, self.MIN_REDRAW_S - (time.monotonic() - self._last_draw))
            self._timer.start(int(wait * 1000))

    def _redraw(self) -> None:
        if self.canvas is None or not self.isVisible():
            return                        # showEvent draws what arrived meanwhile
        self._empty.set_text(self.empty_text)
        self._loss_line.set_data(self.steps, self.loss)
        self._loss_line.set_marker("o" if len(self.loss) == 1 else "")   # a single point has no line
        xs, ys = (list(v) for v in zip(*self.dice)) if self.dice else ([], [])
        self._dice_line.set_data(xs, ys)
        self._dice_text.set_text(f"{ys[-1]:.3f}" if ys else "")
        if ys:
            self._dice_text.xy = (xs[-1], ys[-1])
        self._empty.set_visible(not self.loss and not self.dice)
        all_x = self.steps + xs
        if all_x:
            lo, hi = min(all_x), max(all_x)
            self.ax.set_xlim(lo - 0.5 if lo == hi else lo, hi + 0.5 if lo == hi else hi)
        if self.loss:
            lo, hi = min(self.loss), max(self.loss)
            pad = 0.05 * (hi - lo) or 0.05 * abs(hi) or 0.05
            self.ax.set_ylim(lo - pad, hi + pad)
        self._last_draw = time.monotonic()
        self.canvas.draw_idle()


class RoundsTable(QTableWidget):
    """One row per training round: when, how many labels, validation Dice, outcome, the model
    version it produced, and how much annotators edited that model's proposals."""

    def __init__(self) -> None:
        super().__init__(0, len(ROUND_COLUMNS))
        self.setHorizontalHeaderLabels(ROUND_COLUMNS)
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.setMinimumHeight(90)
        self.setToolTip("When: round start (month-day time). Labels: training (×image views) + held-out labels. Dice: "
                        "validation Dice. Edited: mean fraction of pixels annotators changed in the proposals "
                        "of that round's model (lower = the model helps more)")
        self.verticalHeader().setDefaultSectionSize(22)
        font = self.font()
        font.setPointSizeF(max(7.0, font.pointSizeF() - 1.5))
        self.setFont(font)
        self.horizontalHeader().setFont(font)

    def refresh(self, project) -> None:
        rounds = project.rounds() if project is not None else []
        edits: dict[int, list[float]] = {}
        if project is not None:
            for lab in project.labels(kinds=("corrected",)):
                if lab.model_version is not None and lab.edited_fraction is not None:
                    edits.setdefault(lab.model_version, []).append(lab.edited_fraction)
        self.setRowCount(len(rounds))
        for i, r in enumerate(reversed(rounds)):          # newest first
            cfg, m = r.config, r.metrics
            labels = cfg.get("labelled")
            views = f"×{cfg['views']}" if cfg.get("views", 1) > 1 else ""
            used = "" if labels is None else f"{labels}{views}" + (f"+{cfg['val']}" if cfg.get("val") else "")
            dice = m.get("val_dice")
            e = edits.get(r.model_version) if r.model_version is not None else None
            cells = (time.strftime("%m-%d %H:%M", time.localtime(r.started)), used,
                     "" if dice is None else f"{dice:.3f}", r.status,
                     "" if r.model_version is None else f"v{r.model_version}",
                     "" if not e else f"{100 * sum(e) / len(e):.1f}% ({len(e)})")
            for j, text in enumerate(cells):
                self.setItem(i, j, QTableWidgetItem(text))
            if cfg.get("route"):                          # what the round trained, on the model cell
                self.item(i, 4).setToolTip(f"trained: {cfg['route']}")
