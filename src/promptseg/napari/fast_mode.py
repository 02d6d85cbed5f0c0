"""The dock's "Fast mode" box: reduced precision for the Predictor where the device has one.

Faster embedding (and CPU prompts), with masks close to float32's but not identical
(docs/benchmarks.md, "Encoder precision"); off by default, training stays float32.
"""
from __future__ import annotations

from qtpy.QtWidgets import QCheckBox, QComboBox

_TIPS = {
    None: "No faster precision on this device (float32 only)",
    ("bfloat16", "bfloat16"): "Image encoder and decoder in bfloat16 instead of float32: faster embedding and "
                              "prompts, masks close to float32's but not identical.",
    ("float16", "float32"): "Image encoder in float16 (CUDA graphs) instead of float32: faster embedding, "
                            "masks close to float32's but not identical.",
}


class FastModeBox(QCheckBox):
    """Follows ``device_combo``: enabled only where :func:`fast_precisions` has something."""

    def __init__(self, device_combo: QComboBox):
        super().__init__("Fast mode")
        self._on = False     # read by worker threads (not the Qt widget itself)
        self.toggled.connect(self._set_on)
        device_combo.currentTextChanged.connect(self._follow)
        self._follow(device_combo.currentText())

    def precisions(self, device: str) -> tuple[str, str]:
        """(encoder, decoder) precision for a Predictor on ``device``; safe from any thread."""
        from ..inference.predictor import fast_precisions

        return (fast_precisions(device) if self._on else None) or ("float32", "float32")

    def _set_on(self, on: bool) -> None:
        self._on = bool(on)

    def _follow(self, device: str) -> None:
        from ..inference.predictor import fast_precisions

        try:
            fast = fast_precisions(device)
        except ValueError:       # e.g. cuda chosen on a machine without it: Propose reports that
            fast = None
        self.setEnabled(fast is not None)
        self.setChecked(self.isChecked() and fast is not None)
        self.setToolTip(_TIPS[fast] + ("" if fast is None else " Training always uses float32."))
