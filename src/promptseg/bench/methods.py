"""The methods a benchmark run compares, and how each is trained on cached embeddings.

``supervised``      the SSL trainer with the unlabelled weight at 0 (training/ssl.py's ``supervised``
                    variant: stage-1 losses, the same augmentations, no teacher) on the
                    labelled subset only, so it differs from the SSL methods in nothing else;
``supervised_100``  the same on every training image (the fully supervised reference);
``supervised+stain`` diagnostic: ``supervised`` plus the labelled images recoloured with the
                    unlabelled images' stains (``--stain-views``; it reads their colour only);
``unet``            a U-Net trained from scratch on the labelled subset's pixels, the standard
                    way (bench/unet_baseline.py, bench/pixel_train.py);
``litemedsam_ft``   LiteMedSAM's encoder fine-tuned with a light full-resolution decoder on the
                    labelled subset's pixels, in the same loop (bench/litemedsam_ft.py);
``supervised_ft``   diagnostic, not in the default list (a GPU job): ``supervised`` with the
                    encoder trained too (bench/finetune.py); ``supervised_ft_100`` on every image;
                    ``ft+supervised`` / ``ft+promptseg``: that tuned encoder frozen again, then
                    the named method on its embeddings for the same number of steps;
``promptseg_student`` a U-Net at the ``unet`` settings trained on the labelled subset plus the
                    ``promptseg`` teacher's pseudo labels of the unlabelled images
                    (bench/student.py); ``promptseg_ensemble``: its and the teacher's
                    probabilities averaged;
SSL methods         training/ssl.py's teacher-student training with the labelled subset plus
                    the other training images unlabelled (``mean_teacher``: EMA teacher only;
                    ``promptseg``: full; ``promptseg-no_*``: one expert or loss off).
The two pixel baselines train neither on cached embeddings nor on unlabelled images.
All prompt-model methods share the backbone, decoder, initial weights and step budget.
"""
from __future__ import annotations

from typing import Callable

from ..model.segmenter import PromptSegModel
from ..training.ssl import method_config, train_ssl
from ..training.types import ClassPrompts, TrainItem, UnlabelledItem

SSL_METHODS = ("mean_teacher", "promptseg", "promptseg-no_text", "promptseg-no_exemplar",
               "promptseg-no_feedback", "promptseg-no_contrastive")
PIXEL_METHODS = ("unet", "litemedsam_ft")
STUDENT_METHODS = ("promptseg_student", "promptseg_ensemble")
ALL_METHODS = ("supervised", "supervised_100") + PIXEL_METHODS + SSL_METHODS + STUDENT_METHODS
FT_METHODS = ("supervised_ft", "supervised_ft_100", "ft+supervised", "ft+promptseg")
KNOWN_METHODS = ALL_METHODS + FT_METHODS + ("supervised+stain",)
QUICK_METHODS = ("supervised", "supervised_100", "unet", "mean_teacher", "promptseg", "promptseg-no_text",
                 "promptseg-no_exemplar")


def parse_methods(spec: str | None, default: tuple[str, ...]) -> list[str]:
    """The methods named in ``spec`` (comma-separated), or ``default``; unknown names are an error."""
    names = [m.strip() for m in spec.split(",") if m.strip()] if spec else list(default)
    unknown = [m for m in names if m not in KNOWN_METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(KNOWN_METHODS)}")
    return names


def uses_all_labels(method: str) -> bool:
    return method in ("supervised_100", "supervised_ft_100")


def uses_stain_views(method: str) -> bool:
    """Whether ``method`` trains on the stain views of the labelled images: it may look at the
    unlabelled images, whose stains they carry."""
    return method in SSL_METHODS or method == "supervised+stain"


def progress_printer(tag: str, steps: int, log: Callable[[str], None], every: int | None = None):
    every = every or max(1, steps // 5)

    def on_step(d: dict) -> None:
        s = d.get("step", 0)
        if s % every == 0 or s == steps:
            log(f"    {tag} step {s}/{steps} loss {d.get('total', float('nan')):.4f} ({d.get('it_s', 0):.2f} it/s)")
    return on_step


def crop_overrides(model: PromptSegModel, crop_px: int | None, batch: int | None) -> dict:
    """Trainer overrides for a training crop of ``crop_px`` image pixels and ``batch`` tiles per step
    (labelled and unlabelled each); None keeps the defaults (128 px, 2 tiles: sized for 2 CPU cores)."""
    out = {}
    if crop_px is not None:
        stride, tile = model.backbone.stride, model.tile
        if crop_px % stride or not stride <= crop_px <= tile:
            raise ValueError(f"--crop must be a multiple of {stride} between {stride} and {tile} pixels, got {crop_px}")
        out["crop"] = crop_px // stride
    if batch is not None:
        if batch < 1:
            raise ValueError(f"--batch must be at least 1, got {batch}")
        out["batch_tiles"] = batch
    return out


def train_prompt_model(method: str, model: PromptSegModel, labelled: list[TrainItem], unlabelled: list[TrainItem],
                       prompts: ClassPrompts, steps: int, seed: int, device: str = "cpu",
                       on_step: Callable[[dict], None] | None = None, crop_px: int | None = None,
                       batch: int | None = None, label_jitter: float | None = None) -> dict:
    """Train ``model`` in place with ``method``; returns the last step's losses. ``unlabelled``
    items only lend their embeddings (their labels are never read). ``label_jitter`` None keeps
    the trainer's default."""
    if method not in ("supervised", "supervised_100", "supervised+stain") + SSL_METHODS:
        raise ValueError(f"{method} is not a prompt-model method")
    method = "supervised" if method == "supervised+stain" else method
    extra = crop_overrides(model, crop_px, batch)
    if label_jitter is not None:
        if not 0 <= label_jitter <= 1:
            raise ValueError(f"--label-jitter must be between 0 and 1, got {label_jitter}")
        extra["label_jitter"] = label_jitter
    cfg = method_config("supervised" if method == "supervised_100" else method, steps, seed, **extra)
    pool = [] if method in ("supervised", "supervised_100") else [UnlabelledItem(it.name, it.emb, pixels=it.pixels)
                                                                   for it in unlabelled]
    return train_ssl(model, labelled, pool, prompts, cfg, device=device, on_step=on_step)

