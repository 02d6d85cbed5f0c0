"""The box and click layers of one image, and what they hold as prompts.

Boxes are the rectangles of the Shapes layer ``<image> box`` (any corner order; each box one
object); clicks are the points of ``<image> clicks +`` (inside the object) and
``<image> clicks −`` (outside it), all for one object. ``<image> object`` shows the masks
waiting to be committed. Bad prompts are reported, one message each, and never decoded.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..inference.prompt_checks import check_box, check_points

BOX, POS, NEG, PENDING = "box", "clicks +", "clicks −", "object"


def prompt_layer_names(image: str) -> dict[str, str]:
    return {k: f"{image} {k}" for k in (BOX, POS, NEG, PENDING)}


@dataclass
class Prompts:
    """What the layers hold: valid boxes (row0, col0, row1, col1), the clicks (row, col) with
    labels 1 / 0, and the problems of the prompts left out."""
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    problems: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.boxes and len(self.points) == 0


def add_prompt_layers(viewer, image: str) -> dict[str, object]:
    """Create the image's prompt layers (kept if present), on the image's scale."""
    names = prompt_layer_names(image)
    scale = viewer.layers[image].scale[-2:]
    if names[POS] not in viewer.layers:
        viewer.add_points(np.zeros((0, 2)), name=names[POS], face_color="#3cb44b", size=8, scale=scale)
    if names[NEG] not in viewer.layers:
        viewer.add_points(np.zeros((0, 2)), name=names[NEG], face_color="#e6194b", size=8, scale=scale)
    if names[BOX] not in viewer.layers:
        viewer.add_shapes(name=names[BOX], edge_color="#ffe119", face_color="transparent", edge_width=2,
                          scale=scale)
    if names[PENDING] not in viewer.layers:
        viewer.add_labels(np.zeros(viewer.layers[image].data.shape[:2], np.int32), name=names[PENDING],
                          opacity=0.6, scale=scale)
    for key in (BOX, POS, NEG, PENDING):
        viewer.layers[names[key]].metadata["promptseg_prompt_of"] = image
    return {k: viewer.layers[n] for k, n in names.items()}


def read_prompts(viewer, image: str, shape: tuple[int, int]) -> Prompts:
    """The image's boxes and clicks, each checked against the image's ``shape``."""
    names = prompt_layer_names(image)
    out = Prompts()
    if names[BOX] in viewer.layers:
        layer = viewer.layers[names[BOX]]
        for i, (corners, kind) in enumerate(zip(layer.data, layer.shape_type)):
            if kind != "rectangle":
                out.problems.append(f"box {i + 1} is a {kind}: only rectangles are boxes")
                continue
            pts = np.asarray(corners, np.float64)[:, -2:]
            box = tuple(float(v) for v in (*pts.min(0), *pts.max(0)))
            try:
                out.boxes.append(check_box(box, shape))
            except ValueError as exc:
                out.problems.append(f"box {i + 1}: {_rounded(exc, box)}")
    pts, labs = [], []
    for key, lab in ((POS, 1), (NEG, 0)):
        if names[key] in viewer.layers:
            data = np.asarray(viewer.layers[names[key]].data, np.float64).reshape(-1, 2)
            pts.append(data)
            labs.append(np.full(len(data), lab, np.int64))
    points = np.concatenate(pts) if pts else np.zeros((0, 2))
    labels = np.concatenate(labs) if labs else np.zeros(0, np.int64)
    if len(points):
        try:
            out.points, out.labels = check_points(points, labels, shape)
        except ValueError as exc:
            out.problems.append(str(exc))
    return out


def _rounded(exc: ValueError, box) -> str:
    """The checker's message with the box written in whole pixels (layers hold floats)."""
    raw = "(" + ", ".join(f"{v:g}" for v in box) + ")"
    return str(exc).replace(repr(box), raw)


def clear_prompts(viewer, image: str) -> None:
    """Empty the image's box and click layers and the pending masks (ready for the next object)."""
    names = prompt_layer_names(image)
    if names[BOX] in viewer.layers:
        viewer.layers[names[BOX]].data = []
    for key in (POS, NEG):
        if names[key] in viewer.layers:
            viewer.layers[names[key]].data = np.zeros((0, 2))
    show_pending(viewer, image, [])


def show_pending(viewer, image: str, masks: list[np.ndarray]) -> None:
    """Show the masks waiting to be committed, one value per object."""
    name = prompt_layer_names(image)[PENDING]
    if name not in viewer.layers:
        return
    layer = viewer.layers[name]
    out = np.zeros(layer.data.shape, np.int32)
    for i, m in enumerate(masks):
        out[m] = i + 1
    layer.data = out
