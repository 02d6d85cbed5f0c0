"""Access to the small real data sets shipped in ``sample_data/``.

Each sample folder holds ``classes.json`` ({"classes": [...]}, ids 1..N in
order), ``images/*.png`` and ``masks/*.png`` with matching file names (mask
pixel values are class ids, 0 = background). See sample_data/README.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Sample", "SampleItem", "sample_data_dir", "list_samples", "load_sample"]


@dataclass
class SampleItem:
    name: str
    image: np.ndarray
    mask: np.ndarray  # class ids, 0 = background


@dataclass
class Sample:
    name: str
    classes: list[str]
    items: list[SampleItem] = field(default_factory=list)
    path: Path | None = None


def sample_data_dir() -> Path:
    """Folder holding the sample sets, for wheel installs and source checkouts."""
    # Wheel install: the build maps the top-level sample_data/ into the package.
    candidates = [Path(__file__).resolve().parents[1] / "sample_data"]
    # Editable install / source checkout: src/promptseg/io/samples.py -> repo root.
    candidates.append(Path(__file__).resolve().parents[3] / "sample_data")
    for c in candidates:
        if c.is_dir() and any(c.glob("*/classes.json")):
            return c
    raise FileNotFoundError(
        "promptseg sample data not found; looked in "
        + ", ".join(str(c) for c in candidates)
        + ". Reinstall the package or run scripts/make_sample_data.py in a source checkout."
    )


def list_samples() -> list[str]:
    """Names of the available sample sets, e.g. ['brain', 'nuclei']."""
    root = sample_data_dir()
    return sorted(p.parent.name for p in root.glob("*/classes.json"))


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.array(im)


def load_sample(name: str) -> Sample:
    """Load every image/mask pair of sample set ``name``."""
    available = list_samples()
    if name not in available:
        raise ValueError(f"unknown sample {name!r}; available: {', '.join(available)}")
    folder = sample_data_dir() / name
    classes = list(json.loads((folder / "classes.json").read_text(encoding="utf-8"))["classes"])
    items = []
    for img_path in sorted((folder / "images").glob("*.png")):
        mask_path = folder / "masks" / img_path.name
        if not mask_path.is_file():
            raise FileNotFoundError(f"sample {name!r}: mask missing for {img_path.name}: {mask_path}")
        items.append(SampleItem(name=img_path.stem, image=_read_png(img_path),
                                mask=_read_png(mask_path)))
    return Sample(name=name, classes=classes, items=items, path=folder)
