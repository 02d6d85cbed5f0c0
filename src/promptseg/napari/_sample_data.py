"""npe2 sample-data contributions: one real image plus its ground-truth labels.

The class names travel with the labels layer (``features`` for napari's
hover/table display, ``metadata['classes']`` for the prompt widget), so the
text prompts to try are visible right next to the data.
"""

from __future__ import annotations

from typing import Any

from promptseg.io import Sample, SampleItem, load_sample

LayerData = tuple[Any, dict[str, Any], str]


def _layers(sample: Sample, item: SampleItem) -> list[LayerData]:
    names = ["background", *sample.classes]
    metadata = {"sample": sample.name, "item": item.name, "classes": list(sample.classes)}
    image_kwargs: dict[str, Any] = {"name": item.name, "metadata": dict(metadata)}
    if item.image.ndim == 3 and item.image.shape[-1] in (3, 4):
        image_kwargs["rgb"] = True
    labels_kwargs: dict[str, Any] = {
        "name": f"{item.name} ground truth",
        # 'index' maps each row to its label value (napari Labels convention).
        "features": {"index": list(range(len(names))), "class": names},
        "metadata": dict(metadata),
        "opacity": 0.5,
        "visible": False,   # hidden at first: it would cover the proposal it is there to check
    }
    return [(item.image, image_kwargs, "image"), (item.mask, labels_kwargs, "labels")]


def nuclei_sample() -> list[LayerData]:
    """Fluorescence nuclei tile (DSB2018 via stardist) with its nucleus mask."""
    sample = load_sample("nuclei")
    return _layers(sample, sample.items[0])


def brain_sample() -> list[LayerData]:
    """Middle axial T1 slice of Colin27 with coarse AAL anatomy labels."""
    sample = load_sample("brain")
    return _layers(sample, sample.items[len(sample.items) // 2])
