"""`promptseg` command line: demo, init, propose, info, gui."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__

if TYPE_CHECKING:   # the CLI imports torch-heavy modules lazily, inside each command
    from .model.segmenter import ModelConfig


def _torch_threads() -> None:
    import os

    import torch

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, os.cpu_count() or 1))


def cmd_demo(a: argparse.Namespace) -> int:
    from .device import resolve_device
    from .workflow.demo import DemoConfig, format_table, run_demo

    _torch_threads()
    cfg = DemoConfig.quick() if a.quick else DemoConfig()
    cfg.sample = a.sample
    if a.rounds:
        cfg.rounds = a.rounds
    report = run_demo(a.out, cfg, device=resolve_device(a.device))
    print()
    print(format_table(report))
    print(f"\nreport: {Path(a.out) / 'report.json'}  ({report['seconds']:.0f} s)")
    return 0


def _image_files(folder: Path) -> list[Path]:
    from .io import SUPPORTED_SUFFIXES

    files = [p for p in sorted(folder.iterdir()) if p.is_file() and
             any(p.name.lower().endswith(s) for s in SUPPORTED_SUFFIXES)]
    if not files:
        raise SystemExit(f"error: no images ({', '.join(SUPPORTED_SUFFIXES)}) in {folder}")
    return files


def cmd_init(a: argparse.Namespace) -> int:
    import numpy as np

    from .io import read_image
    from .model.text import split_prompts
    from .project import Project

    classes = split_prompts(";".join(a.cls)) if a.cls else []
    if a.masks and not classes:
        raise SystemExit("error: --masks needs --class NAME (or 'a; b; c' for mask values 1, 2, 3)")
    proj = Project.open_or_create(a.project)
    for c in classes:
        proj.add_class(c)
    masks = {p.name.split(".")[0]: p for p in _image_files(Path(a.masks))} if a.masks else {}
    seeded = 0
    for path in _image_files(Path(a.images)):
        img, meta = read_image(path)
        rec = proj.add_image(img, name=path.name.split(".")[0], spacing=tuple(meta.get("spacing") or ()) or None)
        m = masks.get(rec.name)
        if m is not None and (a.labelled is None or seeded < a.labelled):
            mask, _ = read_image(m)
            mask = np.asarray(mask)
            if mask.ndim == 3 and mask.shape[-1] in (3, 4):
                mask = mask[..., 0]
            lab = (mask > 0).astype(np.uint8) if len(classes) == 1 else mask.astype(np.int64)
            if lab.max() > len(classes):
                raise SystemExit(f"error: mask {m} has value {lab.max()} but only {len(classes)} classes were given")
            proj.save_label(rec, lab, classes, "gold")
            seeded += 1
    s = proj.summary()
    print(f"project {proj.root}: {s['images']} images, {seeded} gold labels, classes: {[c.name for c in proj.classes()]}")
    return 0


def load_project_predictor(proj, device: str = "cpu"):
    from .inference.predictor import Predictor

    active = proj.active_model()
    p = Predictor.load(proj.model_dir(active.version) if active else None, device=device)
    p.use_embedding_cache(proj.root / "embeddings")
    return p, (active.version if active else None)


def cmd_propose(a: argparse.Namespace) -> int:
    from .device import resolve_device
    from .model.text import split_prompts
    from .project import Project

    _torch_threads()
    names = split_prompts(a.prompt)
    proj = Project.open(a.project)
    pred, version = load_project_predictor(proj, resolve_device(a.device))
    recs = [proj.image(a.image)] if a.image else proj.unlabelled_images()
    if not recs:
        print("nothing to propose: every image has an accepted label (use --image NAME)")
        return 0
    for i, rec in enumerate(recs):
        t0 = time.time()
        pred.set_image(proj.read_image(rec))
        r = pred.predict(names)
        lab = proj.save_label(rec, r.labels, r.prompts, "proposal", model_version=version, prompt=a.prompt)
        pres = ", ".join(f"{n} {p:.2f}" for n, p in zip(r.prompts, r.presence))
        print(f"[{i + 1}/{len(recs)}] {rec.name}: proposal v{lab.version} ({pres}) {time.time() - t0:.1f} s")
    return 0


def cmd_info(a: argparse.Namespace) -> int:
    from .project import Project

    with Project.open(a.project) as proj:
        s = proj.summary()
        s["classes"] = [c.name for c in proj.classes()]
        print(json.dumps(s, indent=2, default=str))
    return 0


def cmd_gui(a: argparse.Namespace) -> int:
    try:
        from .napari.launch import open_viewer
    except ImportError:
        raise SystemExit("error: the GUI needs napari: pip install 'napari-promptseg[napari]'") from None
    open_viewer()
    return 0


def cmd_bench(a: argparse.Namespace) -> int:
    from .bench.latency import run_latency
    from .device import resolve_device

    _torch_threads()
    run_latency(resolve_device(a.device), a.size, a.runs, a.embed_runs, out=a.out, reference=not a.no_reference,
                encoder_precision=a.encoder_precision, decoder_precision=a.decoder_precision)
    return 0


def cmd_bench_monuseg(a: argparse.Namespace) -> int:
    from .bench.monuseg import MonusegConfig, labels_arg, run_monuseg, seeds_arg
    from .device import resolve_device

    _torch_threads()
    kw = dict(out=a.out, labels=labels_arg(a.labels), eval_split=a.eval_split, steps=a.steps,
              unet_steps=a.unet_steps, seeds=seeds_arg(a.seeds), subset_seed=a.subset_seed,
              device=resolve_device(a.device), cache=a.cache, crop=a.crop, batch=a.batch, views=a.views,
              label_jitter=a.label_jitter, stain_views=a.stain_views,
              ft_batch=a.ft_batch, ft_from_stage=a.ft_from_stage,
              bf16=a.bf16 or None,
              methods=[m.strip() for m in a.methods.split(",")] if a.methods else None)
    if a.quick:
        cfg = MonusegConfig.quick_defaults(a.data, **kw)
    else:
        cfg = MonusegConfig(data=a.data, **{k: v for k, v in kw.items() if v is not None})
    if a.methods:
        from .bench.methods import ALL_METHODS, parse_methods

        parse_methods(a.methods, ALL_METHODS)  # fail on a typo before embedding anything
    run_monuseg(cfg, _bench_model_config(a))
    print(f"results: {Path(cfg.out) / 'results.json'}")
    return 0


def cmd_bench_effort(a: argparse.Namespace) -> int:
    from .bench.effort import EffortConfig, run_effort
    from .device import resolve_device

    _torch_threads()
    kw = dict(out=a.out, rounds=a.rounds, per_round=a.per_round, initial=a.initial, steps_first=a.steps_first,
              steps_per_round=a.steps_per_round, method=a.method, eval_split=a.eval_split, seed=a.seed,
              device=resolve_device(a.device), cache=a.cache, crop=a.crop, batch=a.batch, bf16=a.bf16 or None,
              label_jitter=a.label_jitter)
    if a.quick:
        cfg = EffortConfig.quick_defaults(a.data, **kw)
    else:
        cfg = EffortConfig(data=a.data, **{k: v for k, v in kw.items() if v is not None})
    run_effort(cfg, _bench_model_config(a))
    print(f"results: {Path(cfg.out) / 'results.json'}")
    return 0


def cmd_bench_aal(a: argparse.Namespace) -> int:
    from .bench.aal import AALConfig, run_aal
    from .device import resolve_device

    _torch_threads()
    kw = dict(out=a.out, plane=a.plane, labelled=a.labelled, steps=a.steps, slice_step=a.slice_step, seed=a.seed,
              device=resolve_device(a.device), cache=a.cache, crop=a.crop,
              methods=[m.strip() for m in a.methods.split(",")] if a.methods else None,
              propagate=[m.strip() for m in a.propagate.split(",") if m.strip()] if a.propagate is not None else None)
    cfg = AALConfig.quick_defaults(**kw) if a.quick else AALConfig(**{k: v for k, v in kw.items() if v is not None})
    run_aal(cfg)
    print(f"results: {Path(cfg.out) / 'results.json'}")
    return 0


def cmd_bench_prompts(a: argparse.Namespace) -> int:
    from .bench.prompt_data import make_dev_set
    from .bench.prompts import PromptsConfig, print_summary, run_prompts

    _torch_threads()
    if a.make_dev:
        path = make_dev_set(a.make_dev, quick=a.quick, monuseg=a.monuseg)
        print(f"wrote {path}")
        if not a.data:
            return 0
    if not a.data:
        raise SystemExit("bench prompts needs --data DIR (images/, masks/, targets.csv) or --make-dev DIR")
    print_summary(run_prompts(PromptsConfig(a.data, out=a.out, device=a.device, limit=a.limit)))
    return 0


def cmd_bench_merge(a: argparse.Namespace) -> int:
    from .bench.methods import ALL_METHODS
    from .bench.report import bar_plot, markdown_table, merge_runs, write_results

    merged = merge_runs(a.runs)
    rank = {m: i for i, m in enumerate(ALL_METHODS)}
    results = sorted(merged["results"], key=lambda r: (rank.get(r["method"], len(rank)), r.get("seed", 0)))
    out = Path(a.out)
    write_results(out, results, merged["config"])
    c = merged["config"]
    title = a.title or f"MoNuSeg, {c['labels']:.0%} labels, {c['eval_split']} split, {c['steps']} steps"
    table = markdown_table(results, title=title)
    (out / "results.md").write_text(table, encoding="utf-8")
    bar_plot(results, out / "monuseg_dice.png", title)
    print(table)
    return 0


def _bench_model_config(a: argparse.Namespace) -> ModelConfig:
    """The benchmarks' model: the defaults, with the encoder's BatchNorm mode from --encoder-norm
    (left out of the config when default, so default embedding caches keep their key)."""
    from .model.segmenter import ModelConfig

    return ModelConfig() if a.encoder_norm == "pretrained" else ModelConfig(backbone_kwargs={"norm": a.encoder_norm})


def _unit_float(text: str) -> float:
    v = float(text)
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return v


def _training_args(p: argparse.ArgumentParser) -> None:
    """Options of the prompt models' training shared by `bench monuseg` and `bench effort`."""
    p.add_argument("--crop", type=int, default=None,
                   help="training crop of the prompt models in image pixels, up to the 256-px tile (default 128)")
    p.add_argument("--batch", type=int, default=None,
                   help="tiles per training step, labelled and unlabelled each (default 2)")
    p.add_argument("--label-jitter", type=_unit_float, default=None,
                   help="photometric jitter of the labelled crops' pixels, 0-1 (default 0.2; 0 = the baseline before it)")
    p.add_argument("--bf16", action="store_true",
                   help="run the image encoder in bfloat16 on CUDA (faster; embeddings cached apart from float32 ones)")
    p.add_argument("--encoder-norm", choices=("pretrained", "per_tile"), default="pretrained",
                   help="BatchNorm statistics of the frozen encoder: the pretrained ones (default, the app's) or "
                        "each tile's own (per-tile AdaBN; slower on CPU: no folded fast path)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="promptseg", description=__doc__)
    ap.add_argument("--version", action="version", version=f"promptseg {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="run the annotate/retrain loop headless on bundled sample data")
    d.add_argument("--quick", action="store_true", help="short rounds (under 10 min on 2 CPU cores)")
    d.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    d.add_argument("--out", default="promptseg-demo", help="output folder (report.json, project/)")
    d.add_argument("--sample", default="brain", choices=["brain", "nuclei"])
    d.add_argument("--rounds", type=int, default=None)
    d.set_defaults(fn=cmd_demo)
    i = sub.add_parser("init", help="create a project from a folder of images (and masks)")
    i.add_argument("project")
    i.add_argument("--images", required=True)
    i.add_argument("--masks", help="folder of masks with the same file stems")
    i.add_argument("--class", dest="cls", action="append", help="class name(s); 'a; b' = mask values 1, 2")
    i.add_argument("--labelled", type=int, default=None, help="seed gold labels for the first N masks only")
    i.set_defaults(fn=cmd_init)
    p = sub.add_parser("propose", help="propose labels for unlabelled images (or one image)")
    p.add_argument("project")
    p.add_argument("--prompt", required=True, help="class prompt(s), e.g. 'nucleus' or 'left lung; right lung'")
    p.add_argument("--image")
    p.add_argument("--device", default="cpu")
    p.set_defaults(fn=cmd_propose)
    n = sub.add_parser("info", help="print a project summary")
    n.add_argument("project")
    n.set_defaults(fn=cmd_info)
    t = sub.add_parser("train", help="run a training round as JSON lines (see training/round.py)",
                       add_help=False)
    t.add_argument("rest", nargs=argparse.REMAINDER)
    t.set_defaults(fn=lambda a: __import__("promptseg.training.round", fromlist=["main"]).main(a.rest))
    b = sub.add_parser("bench", help="benchmarks: latency, monuseg, effort, aal")
    bsub = b.add_subparsers(dest="bench", required=True)
    bl = bsub.add_parser("latency", help="embedding and prompt->mask latency")
    bl.add_argument("--device", default="cpu")
    bl.add_argument("--size", type=int, default=512)
    bl.add_argument("--runs", type=int, default=20)
    bl.add_argument("--embed-runs", type=int, default=None, help="default: --runs")
    bl.add_argument("--no-reference", action="store_true",
                    help="skip the same-run baseline (the package's TinyViT module as the encoder)")
    bl.add_argument("--encoder-precision", choices=("float32", "bfloat16", "float16", "float16-compiled"),
                    default="float32",
                    help="the Predictor's image encoder: float16 CUDA graphs (CUDA only; float16-compiled: of "
                         "the torch.compile'd encoder, ~50 s to compile) or a bfloat16 copy (CPUs with native "
                         "bfloat16); the reference stays float32")
    bl.add_argument("--decoder-precision", choices=("float32", "bfloat16"), default="float32",
                    help="bfloat16: the decoder's image-sized products in bfloat16 (CPUs with native bfloat16)")
    bl.add_argument("--out", default="bench-out")
    bl.set_defaults(fn=cmd_bench)
    bm = bsub.add_parser("monuseg", help="label efficiency on MoNuSeg-format data, baselines in the same run")
    bm.add_argument("--data", required=True, help="folder with images/, masks/, captions.csv (image,split,caption)")
    bm.add_argument("--labels", default="0.25", help="labelled fraction of the train rows (0.25, 0.5)")
    bm.add_argument("--eval-split", default="val", choices=["val", "test"])
    bm.add_argument("--quick", action="store_true", help="CPU-affordable: 200 steps (U-Net 300), seed 0, main methods")
    bm.add_argument("--device", default="cpu")
    bm.add_argument("--methods", default=None, help="comma-separated (default: all; --quick: the main ones)")
    bm.add_argument("--steps", type=int, default=None, help="training steps per method (default 1500; --quick 200)")
    bm.add_argument("--unet-steps", type=int, default=None, help="steps of the pixel U-Net (default: --steps)")
    bm.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2; --quick 0)")
    bm.add_argument("--subset-seed", type=int, default=0, help="seed of the labelled-subset draw")
    bm.add_argument("--cache", default=None, help="embedding cache folder (default OUT/embeddings)")
    bm.add_argument("--out", default="bench-monuseg")
    _training_args(bm)
    bm.add_argument("--views", type=int, default=None,
                    help="dihedral views (1-8) of each training image, each run through the encoder (default 1)")
    bm.add_argument("--stain-views", type=int, default=None,
                    help="recolourings of each labelled image, each with the stain of another unlabelled train "
                         "image, run through the encoder, for the methods that may see the unlabelled images "
                         "(the SSL methods, supervised+stain); default 0")
    bm.add_argument("--ft-batch", type=int, default=None,
                    help="whole tiles per step of the encoder-training methods (supervised_ft, ft+...; default 8)")
    bm.add_argument("--ft-from-stage", type=int, default=None,
                    help="those methods train TinyViT from this stage (1-3) on, the earlier ones frozen and "
                         "run once per tile of the --views (CPU-affordable); default 0: the whole encoder")
    bm.set_defaults(fn=cmd_bench_monuseg)
    be = bsub.add_parser("effort", help="simulated annotator: edited fraction per round on MoNuSeg-format data")
    be.add_argument("--data", required=True, help="folder with images/, masks/, captions.csv")
    be.add_argument("--quick", action="store_true", help="CPU-affordable: 4 rounds x 3 images, short training")
    be.add_argument("--rounds", type=int, default=None, help="proposal rounds (default 5; --quick 4)")
    be.add_argument("--per-round", type=int, default=None, help="images proposed per round (default 4; --quick 3)")
    be.add_argument("--initial", type=int, default=None, help="labelled images to start with (default 2)")
    be.add_argument("--steps-first", type=int, default=None)
    be.add_argument("--steps-per-round", type=int, default=None)
    be.add_argument("--method", default=None, help="supervised or an SSL method (default promptseg)")
    be.add_argument("--eval-split", default="val", choices=["val", "test"])
    be.add_argument("--seed", type=int, default=None)
    be.add_argument("--device", default="cpu")
    be.add_argument("--cache", default=None, help="embedding cache folder (default OUT/embeddings)")
    be.add_argument("--out", default="bench-effort")
    _training_args(be)
    be.set_defaults(fn=cmd_bench_effort)
    bg = bsub.add_parser("merge", help="join `bench monuseg` runs split by seed or method into one table (mean ± std)")
    bg.add_argument("runs", nargs="+", help="`bench monuseg` output folders, each with results.json")
    bg.add_argument("--out", required=True)
    bg.add_argument("--title", default=None)
    bg.set_defaults(fn=cmd_bench_merge)
    ba = bsub.add_parser("aal", help="Colin27 + AAL coarse classes from few labelled slices (mricron-data)")
    ba.add_argument("--plane", default="axial", choices=["axial", "coronal", "sagittal"])
    ba.add_argument("--labelled", type=float, default=None, help="labelled fraction of the slices (default 0.05)")
    ba.add_argument("--quick", action="store_true", help="CPU-affordable: every 2nd slice, 200 steps")
    ba.add_argument("--methods", default=None,
                    help="comma-separated (default nearest_slice,flow_slice,supervised,promptseg; each trained "
                         "method is also scored through Propagate)")
    ba.add_argument("--propagate", default=None,
                    help="Propagate modes each trained method is also scored in, comma-separated (default "
                         "model,flow+model: rows METHOD+propagate and METHOD+flow; empty: none)")
    ba.add_argument("--steps", type=int, default=None, help="training steps per method (default 1500; --quick 200)")
    ba.add_argument("--slice-step", type=int, default=None, help="use every n-th slice (default 1; --quick 2)")
    ba.add_argument("--crop", type=int, default=None,
                    help="training crop in pixels (default 0: the whole tile, so whole slices)")
    ba.add_argument("--seed", type=int, default=None)
    ba.add_argument("--device", default="cpu")
    ba.add_argument("--cache", default=None, help="embedding cache folder (default OUT/embeddings)")
    ba.add_argument("--out", default="bench-aal")
    ba.set_defaults(fn=cmd_bench_aal)
    bp = bsub.add_parser("prompts", help="text, box, click and LiteMedSAM-box Dice per target, with latency")
    bp.add_argument("--data", default=None, help="folder with images/, masks/, targets.csv (image,mask,target,...)")
    bp.add_argument("--make-dev", default=None, metavar="DIR",
                    help="first write the dev set (AAL slices, stardist and MoNuSeg val nuclei) to DIR")
    bp.add_argument("--quick", action="store_true", help="with --make-dev: the small CI variant")
    bp.add_argument("--monuseg", default=str(Path(os.environ.get("PROMPTSEG_DATA", "data")) / "monuseg"),
                    help="MoNuSeg-format folder for the dev set's nuclei (left out when missing)")
    bp.add_argument("--limit", type=int, default=None, help="score the first N targets only")
    bp.add_argument("--device", default="cpu")
    bp.add_argument("--out", default="bench-prompts")
    bp.set_defaults(fn=cmd_bench_prompts)
    g = sub.add_parser("gui", help="open napari with the PromptSeg dock widget")
    g.set_defaults(fn=cmd_gui)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # ProjectError and friends: a message, not a traceback
        if type(exc).__name__ == "ProjectError":
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
