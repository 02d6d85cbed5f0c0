"""Objects from boxes, clicks and "more like this" into the image's Labels layer: each one a new
instance of its class, with the instances outlined in ``<image> objects``."""
from __future__ import annotations

import numpy as np

from ..workflow.exemplars import exemplar_sources
from ..workflow.objects import MaskObject, instance_map, paint_object
from .layers import proposal_layer_name, show_labels
from .state import Proposal


def proposal_for(state, image: str, img: np.ndarray) -> Proposal:
    """The proposal on screen for ``image``; when there is none (an unknown class, or no text
    prompt yet) the image's Labels layer as it stands, or an empty one, becomes its proposal."""
    p = state.current
    if p is not None and p.image == image and p.layer in state.viewer.layers:
        return p
    layer = proposal_layer_name(image)
    viewer = state.viewer
    fixed = np.zeros(img.shape[:2], np.int32)
    classes: list[str] = []
    if layer in viewer.layers and np.shape(viewer.layers[layer].data) == fixed.shape:
        fixed = np.asarray(viewer.layers[layer].data, np.int32)
        classes = list(viewer.layers[layer].metadata.get("classes", []))
    p = Proposal(layer=layer, image=image, prompts=classes, image_array=img, fixed=fixed,
                 model_version=state.model_version, prompt="")
    show_labels(viewer, layer, fixed, classes, known_colors=state.class_colors(),
                scale=viewer.layers[image].scale[-2:], metadata={"image": image})
    state.current = p
    return p


def _show(state, p: Proposal, data: np.ndarray) -> None:
    viewer = state.viewer
    presence = None
    if p.presence is not None:   # classes added since the proposal have no presence score
        presence = np.concatenate([p.presence, np.full(len(p.prompts) - len(p.presence), np.nan)])
    show_labels(viewer, p.layer, data, p.prompts, presence, known_colors=state.class_colors())
    name = f"{p.image} objects"
    inst = instance_map(data, p.prompts, p.objects)
    if name in viewer.layers:
        viewer.layers[name].data = inst
    else:
        layer = viewer.add_labels(inst, name=name, opacity=0.9, scale=viewer.layers[p.layer].scale)
        layer.contour = 1
        layer.metadata["promptseg_prompt_of"] = p.image


def commit_objects(state, image: str, img: np.ndarray, objects: list[MaskObject]) -> int:
    """Paint ``objects`` over the image's labels under their class; returns how many."""
    p = proposal_for(state, image, img)
    data = np.asarray(state.viewer.layers[p.layer].data, np.int32)
    for obj in objects:
        data, p.prompts, _ = paint_object(data, p.prompts, obj)
    p.objects.extend(objects)
    _show(state, p, data)
    return len(objects)


def paint_more(state, image: str, img: np.ndarray, name: str, instances: np.ndarray) -> tuple[int, int]:
    """Paint the proposed ``instances`` (H, W ids) of ``name`` where nothing is marked yet; an
    instance mostly over marked pixels is left out. Returns (painted, left out)."""
    p = proposal_for(state, image, img)
    data = np.asarray(state.viewer.layers[p.layer].data, np.int32)
    painted, skipped = 0, 0
    for i in range(1, int(instances.max()) + 1):
        m = instances == i
        free = m & (data == 0)
        if 2 * free.sum() < m.sum():
            skipped += 1
            continue
        obj = MaskObject(free, name, "exemplar")
        data, p.prompts, _ = paint_object(data, p.prompts, obj, only_background=True)
        p.objects.append(obj)
        painted += 1
    _show(state, p, data)
    return painted, skipped


def exemplar_masks(state, image: str, name: str) -> list[np.ndarray]:
    """The image's pixels of class ``name`` on screen (committed objects, accepted or edited
    labels), as one mask whose parts are the exemplars; empty when it has none."""
    p = state.current
    if p is None or p.image != image or p.layer not in state.viewer.layers:
        return []
    lower = [c.lower() for c in p.prompts]
    if name.lower() not in lower:
        return []
    mask = np.asarray(state.viewer.layers[p.layer].data) == lower.index(name.lower()) + 1
    return [mask] if mask.any() else []


def project_exemplars(project, name: str, exclude: str, limit: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, mask) of ``name`` from the project's ``limit`` newest accepted labels of other images."""
    if project is None:
        return []
    out = []
    for lab, value in exemplar_sources(project, [name], exclude, limit)[name]:
        mask, _ = project.read_label(lab)
        if mask.ndim == 2 and (mask == value).any():
            out.append((project.read_image(lab.image_name), mask == value))
    return out
