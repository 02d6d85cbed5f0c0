"""`promptseg bench aal`: multi-class brain anatomy from few labelled slices.

Colin27 T1 and the AAL atlas from the Debian package ``mricron-data``; the 116 AAL labels are
merged into the bundled brain sample's coarse named classes (its ``classes.json`` holds the
AAL-name -> class map built by scripts/make_sample_data.py) and the class names are the text
prompts. Along ``--plane``, every slice that holds atlas labels is used: a fraction (5%) of
them, spread evenly through the volume, is labelled; the rest form the unlabelled pool, and
Dice per class is measured on all of them (their labels are never read in training).

Scoring: ``METHOD`` decodes each slice on its own from the text prompts; the other rows of a
trained method run the dock's Propagate (inference/volume.py), from the labelled slices outwards,
each slice decoded with the text prompts and its neighbour's labels as the dense mask prompt,
as an annotator of a volume would: ``METHOD+propagate`` in the mode ``model`` (the neighbour's
labels as they are) and ``METHOD+flow`` in the mode ``flow+model``
(the neighbour's labels carried along the slice-to-slice optical flow, decoded and blended with
the model's output). Two same-run floors without a model: ``nearest_slice`` copies the labels
of the nearest labelled slice; ``flow_slice`` is Propagate's mode ``flow``, which carries them
slice by slice along the optical flow (inference/slice_flow.py).
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..inference.volume import nearest_seed
from ..io.samples import sample_data_dir
from ..model.segmenter import ModelConfig
from ..training.dataset import make_item
from ..training.evaluate import per_class_dice, summarise
from .data import SegImage
from .methods import FT_METHODS, PIXEL_METHODS, SSL_METHODS, parse_methods, progress_printer, train_prompt_model
from .monuseg import fresh_model, predict_row, prepare
from .report import finish_bar_plot, run_environment, write_results

MRICRON = Path("/usr/share/mricron/templates")
PLANES = ("axial", "coronal", "sagittal")
AAL_BASELINES = ("nearest_slice", "flow_slice")
PROPAGATE_ROW = {"model": "+propagate", "flow+model": "+flow"}   # Propagate mode -> row suffix


@dataclass
class AALConfig:
    out: str = "bench-aal"
    plane: str = "axial"
    labelled: float = 0.05
    methods: list[str] = field(default_factory=lambda: ["nearest_slice", "flow_slice", "supervised", "promptseg"])
    # Propagate's modes with a model (inference/volume.py) each trained method is scored in.
    propagate: list[str] = field(default_factory=lambda: ["model", "flow+model"])
    steps: int = 1500
    # Training crop in pixels; 0 = the whole tile, i.e. the whole slice: telling lobes apart
    # needs the context of the whole slice, which small crops cut away.
    crop: int = 0
    slice_step: int = 1            # use every n-th slice of the plane (1 = all)
    seed: int = 0
    device: str = "cpu"
    cache: str | None = None
    templates: str = str(MRICRON)
    quick: bool = False

    @classmethod
    def quick_defaults(cls, **kw) -> "AALConfig":
        base = dict(steps=200, slice_step=2, quick=True)
        base.update({k: v for k, v in kw.items() if v is not None})
        return cls(**base)


def coarse_classes() -> tuple[list[str], dict[str, str]]:
    """The brain sample's class names (ids 1..N) and its AAL-name -> class map."""
    d = json.loads((sample_data_dir() / "brain" / "classes.json").read_text(encoding="utf-8"))
    return list(d["classes"]), dict(d["aal_to_class"])


def load_volumes(templates: str | Path = MRICRON) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(T1 volume, coarse label volume with ids 1..N, class names), both on the atlas' RAS grid."""
    import nibabel as nib

    folder = Path(templates)
    files = [folder / f for f in ("ch2.nii.gz", "aal.nii.gz", "aal.nii.txt")]
    if not all(f.is_file() for f in files):
        raise FileNotFoundError(f"Colin27/AAL not found in {folder} (need ch2.nii.gz, aal.nii.gz, aal.nii.txt): "
                                "install the Debian package mricron-data (scripts/setup.sh does)")
    t1_img, aal_img = nib.load(str(files[0])), nib.load(str(files[1]))
    if nib.aff2axcodes(t1_img.affine) != ("R", "A", "S") or not np.allclose(t1_img.affine, aal_img.affine):
        raise ValueError("expected ch2 and aal on the same RAS grid")
    classes, aal_to_class = coarse_classes()
    aal = np.asarray(aal_img.dataobj).astype(np.int64)
    lut = np.zeros(int(aal.max()) + 1, np.uint8)
    for line in files[2].read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and int(parts[0]) <= aal.max():
            if parts[1] not in aal_to_class:
                raise ValueError(f"AAL label {parts[1]} has no coarse class in the brain sample's classes.json")
            lut[int(parts[0])] = classes.index(aal_to_class[parts[1]]) + 1
    return np.asarray(t1_img.dataobj).astype(np.float32), lut[aal], classes


def plane_view(vol: np.ndarray, plane: str, i: int) -> np.ndarray:
    """Radiological views (patient right on the left): axial anterior up (as the brain
    sample), coronal and sagittal superior up."""
    if plane == "axial":
        return np.ascontiguousarray(vol[::-1, ::-1, i].T)
    if plane == "coronal":
        return np.ascontiguousarray(vol[::-1, i, ::-1].T)
    if plane == "sagittal":
        return np.ascontiguousarray(vol[i, ::-1, ::-1].T)
    raise ValueError(f"plane must be one of {PLANES}, got {plane!r}")


def slices(t1: np.ndarray, labels: np.ndarray, plane: str, step: int = 1) -> list[SegImage]:
    """Every ``step``-th slice of the plane that holds atlas labels (T1 scaled to uint8 per volume)."""
    axis = {"axial": 2, "coronal": 1, "sagittal": 0}[plane]
    has = np.nonzero(labels.any(axis=tuple(a for a in range(3) if a != axis)))[0]
    lo, hi = float(t1.min()), float(t1.max())
    t8 = np.round((t1 - lo) / max(hi - lo, 1e-6) * 255).astype(np.uint8)
    return [SegImage(f"{plane}_{i:03d}", "", "", plane_view(t8, plane, i), plane_view(labels, plane, i))
            for i in has[::max(1, step)]]


def spread_indices(n: int, k: int) -> list[int]:
    """k indices spread evenly through 0..n-1, away from the extreme (nearly empty) ends."""
    k = max(1, min(k, n))
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, k + 2)[1:-1]})


def propagated_labels(model, rows: list[SegImage], labelled: list[int], classes: list[str], prompts,
                      cache_dir: str | Path, device: str, mode: str = "model",
                      flows: dict | None = None) -> dict[int, np.ndarray]:
    """Label maps of every non-labelled slice from the dock's Propagate, seeded with the
    labelled slices' labels (embeddings come from the bench's cache; ``flows``: the run's
    slice-to-slice flows, computed once for all methods)."""
    from ..inference.predictor import Predictor
    from ..inference.volume import propagate

    pred = Predictor(model, device=device, prompt_cache=prompts.as_cache())
    pred.use_embedding_cache(cache_dir)
    volume, seeds = seeded_volume(rows, labelled)
    return {res.index: res.labels for res in propagate(pred, volume, seeds, labelled, classes, mode=mode, flows=flows)}


def seeded_volume(rows: list[SegImage], labelled: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The slices stacked into a volume, and a label volume holding only the labelled slices."""
    volume = np.stack([r.image for r in rows])
    seeds = np.zeros(volume.shape, np.int32)
    for i in labelled:
        seeds[i] = rows[i].mask
    return volume, seeds


def flow_slice_labels(rows: list[SegImage], labelled: list[int], classes: list[str],
                      flows: dict | None = None) -> dict[int, np.ndarray]:
    """The ``flow_slice`` floor: the labelled slices' labels carried outwards along the flow."""
    from ..inference.volume import propagate

    volume, seeds = seeded_volume(rows, labelled)
    return {res.index: res.labels for res in propagate(None, volume, seeds, labelled, classes, mode="flow", flows=flows)}


def run_aal(cfg: AALConfig, model_cfg: ModelConfig | None = None, log: Callable[[str], None] = print) -> dict:
    model_cfg = model_cfg or ModelConfig()
    baselines = [m for m in cfg.methods if m in AAL_BASELINES]
    methods = parse_methods(",".join(m for m in cfg.methods if m not in AAL_BASELINES), ())
    if {*PIXEL_METHODS, "supervised_100", *FT_METHODS} & set(methods):
        raise ValueError("the AAL bench compares prompt-model methods (supervised and SSL ones) "
                         "and the nearest_slice baseline")
    if set(cfg.propagate) - set(PROPAGATE_ROW):
        raise ValueError(f"--propagate takes {' and/or '.join(PROPAGATE_ROW)}, got {','.join(cfg.propagate)}")
    t1, labels, classes = load_volumes(cfg.templates)
    rows = slices(t1, labels, cfg.plane, cfg.slice_step)
    n_lab = max(2, int(round(cfg.labelled * len(rows))))
    lab_idx = spread_indices(len(rows), n_lab)
    labelled = [rows[i] for i in lab_idx]
    others_idx = [i for i in range(len(rows)) if i not in lab_idx]
    others = [rows[i] for i in others_idx]
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    config = {**asdict(cfg), "classes": classes, "n_slices": len(rows), "labelled_slices": [r.name for r in labelled],
              "eval_slices": len(others), "model": model_cfg.to_dict(),
              "protocol": "labelled slices spread evenly; all other slices are the unlabelled pool and are scored "
                          "(labels never read in training); Dice per class over slices where the class is in "
                          "the prediction or the ground truth, then the mean over classes", **run_environment(cfg.device)}
    log(f"AAL bench ({cfg.plane}): {len(rows)} slices, {len(labelled)} labelled ({cfg.labelled:.0%}), "
        f"{len(others)} unlabelled + scored, {len(classes)} classes; methods {', '.join(baselines + methods)}")
    t0 = time.time()
    results = []
    flows: dict = {}   # the slice-to-slice flows: the flow_slice floor and every flow+model row share them

    def add(method: str, preds: dict[int, np.ndarray], started: float, **extra) -> None:
        s = summarise([per_class_dice(preds[i], rows[i].mask, len(classes)) for i in others_idx], classes)
        results.append({"method": method, "seed": cfg.seed, "dice": s["dice"], "per_class": s["per_class"],
                        "seconds": round(time.time() - started, 1), **extra})
        write_results(out, results, config)
        log(f"[{method}] mean Dice over {len(s['per_class'])} classes {100 * s['dice']:.2f}  "
            f"({time.time() - started:.0f} s)")

    if "nearest_slice" in baselines:
        add("nearest_slice", {i: rows[nearest_seed(i, lab_idx)].mask for i in others_idx}, time.time())
    if "flow_slice" in baselines:
        t_ = time.time()
        add("flow_slice", flow_slice_labels(rows, lab_idx, classes, flows), t_)
    if methods:
        cache_dir = cfg.cache or out / "embeddings"
        prep = prepare(rows, model_cfg, cache_dir, cfg.device, log, class_names=tuple(classes))
        items = {r.name: make_item(r.name, *prep.embs[r.name], r.mask, classes, classes, prep.pixels[r.name]) for r in rows}
        base = fresh_model(prep, model_cfg, cfg.seed, cfg.device)
    for method in methods:
        t1_ = time.time()
        model = copy.deepcopy(base)
        unl = [items[r.name] for r in others] if method in SSL_METHODS else []
        train_prompt_model(method, model, [items[r.name] for r in labelled], unl, prep.prompts, cfg.steps, cfg.seed,
                           cfg.device, on_step=progress_printer(f"[{method}]", cfg.steps, log),
                           crop_px=cfg.crop or model.tile)
        train_s = round(time.time() - t1_, 1)
        preds = {}
        for i in others_idx:
            preds[i] = predict_row(model, rows[i].name, prep, cfg.device)
        add(method, preds, t1_, steps=cfg.steps, train_seconds=train_s)
        for mode in cfg.propagate:
            t2 = time.time()
            add(method + PROPAGATE_ROW[mode], propagated_labels(model, rows, lab_idx, classes, prep.prompts,
                                                                cache_dir, cfg.device, mode, flows), t2, steps=cfg.steps)
    config["seconds"] = round(time.time() - t0, 1)
    write_results(out, results, config)
    title = (f"AAL {cfg.plane}, {len(labelled)}/{len(rows)} slices labelled"
             f"{' — CPU --quick' if cfg.quick else ''}")
    table = aal_table(results, classes, title)
    (out / "results.md").write_text(table, encoding="utf-8")
    aal_plot(results, classes, out / "aal_dice.png", title)
    log("\n" + table)
    return {"results": results, "config": config}


def aal_table(results: list[dict], classes: list[str], title: str) -> str:
    lines = [f"### {title}", "", "| class | " + " | ".join(r["method"] for r in results) + " |",
             "|---|" + "---|" * len(results)]
    for c in classes:
        vals = [r["per_class"].get(c) for r in results]
        lines.append(f"| {c} | " + " | ".join("-" if v is None else f"{100 * v:.1f}" for v in vals) + " |")
    lines.append("| **mean** | " + " | ".join(f"**{100 * r['dice']:.1f}**" for r in results) + " |")
    return "\n".join(lines) + "\n"


def aal_plot(results: list[dict], classes: list[str], path: str | Path, title: str) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    x = np.arange(len(classes) + 1)
    width = 0.8 / max(1, len(results))
    fig, ax = plt.subplots(figsize=(11, 4))
    for j, r in enumerate(results):
        vals = [100 * r["per_class"].get(c, 0.0) for c in classes] + [100 * r["dice"]]
        ax.bar(x + (j - (len(results) - 1) / 2) * width, vals, width, label=r["method"])
    ax.set_xticks(x)
    ax.set_xticklabels(classes + ["mean"], rotation=35, ha="right")
    ax.set_ylabel("Dice (%)")
    ax.set_ylim(0, 100)
    return finish_bar_plot(fig, ax, title, path)
