"""The dock's "Fast mode" box: reduced precision for the Predictor where the device has one.

Faster embedding (and CPU prompts), with masks close to float32's but not identical
(docs/benchmarks.md, "Encoder precision"); off by default, training stays float32. What the
device offers is asked by the loading worker (the question imports torch and takes a while the
first time), so the box follows the device once the model has loaded.
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
        self._choices: dict[str, tuple[str, str] | None] | None = None
        self.setEnabled(False)
        self.setToolTip(_WAITING)
        device_combo.currentTextChanged.connect(self._follow)

    def set_ready(self, choices: dict[str, tuple[str, str] | None]) -> None:
        """The model has loaded; ``choices``: each device's fast precisions (None for none),
        worked out in the loading worker. Follow the device from now on."""
        self._choices = dict(choices)
        self._follow(self._combo.currentText())

    def _follow(self, device: str) -> None:
        if self._choices is None:
            return
        fast = self._choices.get(device)   # a device that is not here has none: Propose says why
        self.setEnabled(fast is not None)
        self.setChecked(self.isChecked() and fast is not None)
        self.setToolTip(_TIPS[fast] + ("" if fast is None else " Training always uses float32."))
