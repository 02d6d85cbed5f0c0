"""The dock's "Fast mode" box: reduced precision for the Predictor where the device has one.

Faster embedding (and CPU prompts), with masks close to float32's but not identical
(docs/benchmarks.md, "Encoder precision"); off by default, training stays float32. What the
device offers is only asked once the model has loaded (the question imports torch, which the
GUI thread leaves to the loading worker).
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
_WAITING = "Reduced precision where the device has one; available once the model has loaded"


class FastModeBox(QCheckBox):
    """Follows ``device_combo``: enabled only where :func:`fast_precisions` has something."""

    def __init__(self, device_combo: QComboBox):
        super().__init__("Fast mode")
        self._combo = device_combo
        self._ready = False
        self.setEnabled(False)
        self.setToolTip(_WAITING)
        device_combo.currentTextChanged.connect(self._follow)

    def set_ready(self) -> None:
        """The model has loaded (torch is imported): follow the device from now on."""
        self._ready = True
        self._follow(self._combo.currentText())

    def _follow(self, device: str) -> None:
        if not self._ready:
            return
        from ..inference.predictor import fast_precisions

        try:
            fast = fast_precisions(device)
        except ValueError:       # e.g. cuda chosen on a machine without it: Propose reports that
            fast = None
        self.setEnabled(fast is not None)
        self.setChecked(self.isChecked() and fast is not None)
        self.setToolTip(_TIPS[fast] + ("" if fast is None else " Training always uses float32."))
