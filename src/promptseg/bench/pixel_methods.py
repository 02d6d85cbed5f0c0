"""The bench's pixel baselines as methods: ``unet`` (bench/unet_baseline.py) and
``litemedsam_ft`` (bench/litemedsam_ft.py), each trained on the labelled images' pixels and
masks only, and scored on whole evaluation images in tiles."""
from __future__ import annotations

import time
from typing import Callable

from .data import SegImage
from .litemedsam_ft import LiteMedSAMFTConfig, predict_litemedsam_ft, train_litemedsam_ft
from .metrics import binary_scores
from .methods import PIXEL_METHODS, progress_printer
from .unet_baseline import UNetTrainConfig, predict_unet, train_unet


def pixel_config(method: str, steps: int, batch: int, crop: int, width: int, seed: int) -> UNetTrainConfig | LiteMedSAMFTConfig:
    """The training settings of a pixel method (``litemedsam_ft`` keeps the encoder's tile as its crop)."""
    if method == "unet":
        return UNetTrainConfig(steps=steps, batch=batch, crop=crop, width=width, seed=seed)
    if method == "litemedsam_ft":
        return LiteMedSAMFTConfig(steps=steps, batch=batch, seed=seed)
    raise ValueError(f"{method} is not a pixel method; choose from {', '.join(PIXEL_METHODS)}")


def run_pixel_method(method: str, cfg: UNetTrainConfig | LiteMedSAMFTConfig, labelled: list[SegImage],
                     evals: list[SegImage], device: str, log: Callable[[str], None], tag: str) -> tuple[list[dict], float]:
    """Train ``method`` on ``labelled`` and score it on ``evals``: (per-image scores, training seconds)."""
    t = time.time()
    images, masks = [r.image for r in labelled], [r.mask for r in labelled]
    on_step = progress_printer(tag, cfg.steps, log)
    if method == "unet":
        net = train_unet(images, masks, cfg, device, on_step=on_step)
        predict = predict_unet
    else:
        net = train_litemedsam_ft(images, masks, cfg, device, on_step=on_step)
        predict = predict_litemedsam_ft
    train_s = time.time() - t
    return [{"image": r.name, **binary_scores(predict(net, r.image, device), r.mask)} for r in evals], train_s
