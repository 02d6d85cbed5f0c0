"""The `promptseg bench ...` subcommands: their arguments, and thin commands that import the
benchmark (and torch) only when one runs, so parsing any command stays light."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..model.segmenter import ModelConfig


def cmd_bench(a: argparse.Namespace) -> int:
    from ..device import resolve_device, use_all_cores
    from .latency import run_latency

    use_all_cores()
    run_latency(resolve_device(a.device), a.size, a.runs, a.embed_runs, out=a.out, reference=not a.no_reference,
                encoder_precision=a.encoder_precision, decoder_precision=a.decoder_precision)
    return 0


def cmd_bench_monuseg(a: argparse.Namespace) -> int:
    from ..device import resolve_device, use_all_cores
    from .monuseg import MonusegConfig, labels_arg, run_monuseg, seeds_arg

    use_all_cores()
    kw = dict(out=a.out, labels=labels_arg(a.labels), eval_split=a.eval_split, steps=a.steps,
              unet_steps=a.unet_steps, unet_batch=a.unet_batch, unet_width=a.unet_width, unet_crop=a.unet_crop,
              lmft_steps=a.litemedsam_ft_steps, lmft_batch=a.litemedsam_ft_batch,
              folds=a.folds, fold_ids=seeds_arg(a.fold_ids), seeds=seeds_arg(a.seeds), subset_seed=a.subset_seed,
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
        from .methods import ALL_METHODS, parse_methods

        parse_methods(a.methods, ALL_METHODS)  # fail on a typo before embedding anything
    if cfg.folds:
        from .folds import run_monuseg_cv

        run_monuseg_cv(cfg, _bench_model_config(a))
    else:
        run_monuseg(cfg, _bench_model_config(a))
    print(f"results: {Path(cfg.out) / 'results.json'}")
    return 0


def cmd_bench_effort(a: argparse.Namespace) -> int:
    from ..device import resolve_device, use_all_cores
    from .effort import EffortConfig, run_effort

    use_all_cores()
    kw = dict(out=a.out, method=a.method, eval_split=a.eval_split, seed=a.seed,
              device=resolve_device(a.device), cache=a.cache, crop=a.crop, batch=a.batch, bf16=a.bf16 or None,
              label_jitter=a.label_jitter)
    if a.quick:
        cfg = EffortConfig.quick_defaults(a.data, **kw)
    else:
        cfg = EffortConfig(data=a.data, **{k: v for k, v in kw.items() if v is not None})
    cfg.schedule = cfg.schedule.overridden(rounds=a.rounds, per_round=a.per_round, initial=a.initial,
                                           steps_first=a.steps_first, steps_per_round=a.steps_per_round)
    run_effort(cfg, _bench_model_config(a))
    print(f"results: {Path(cfg.out) / 'results.json'}")
    return 0


def cmd_bench_aal(a: argparse.Namespace) -> int:
    from ..device import resolve_device, use_all_cores
    from .aal import AALConfig, run_aal

    use_all_cores()
    kw = dict(out=a.out, plane=a.plane, labelled=a.labelled, steps=a.steps, slice_step=a.slice_step, seed=a.seed,
              device=resolve_device(a.device), cache=a.cache, crop=a.crop,
              methods=[m.strip() for m in a.methods.split(",")] if a.methods else None,
              propagate=[m.strip() for m in a.propagate.split(",") if m.strip()] if a.propagate is not None else None)
    cfg = AALConfig.quick_defaults(**kw) if a.quick else AALConfig(**{k: v for k, v in kw.items() if v is not None})
    run_aal(cfg)
    print(f"results: {Path(cfg.out) / 'results.json'}")
    return 0


def cmd_bench_prompts(a: argparse.Namespace) -> int:
    from ..device import use_all_cores
    from .prompt_data import make_cerebellar_check, make_dev_set
    from .prompts import PromptsConfig, print_summary, run_prompts

    use_all_cores()
    if a.make_cerebellar_check:
        print(f"wrote {make_cerebellar_check(a.make_cerebellar_check)}")
    if a.make_dev:
        path = make_dev_set(a.make_dev, quick=a.quick, monuseg=a.monuseg)
        print(f"wrote {path}")
    if (a.make_dev or a.make_cerebellar_check) and not a.data:
        return 0
    if not a.data:
        raise SystemExit("bench prompts needs --data DIR (images/, masks/, targets.csv) or --make-dev DIR")
    print_summary(run_prompts(PromptsConfig(a.data, out=a.out, device=a.device, limit=a.limit,
                                            zoom_side=a.zoom_side)))
    return 0


def cmd_bench_merge(a: argparse.Namespace) -> int:
    from .methods import ALL_METHODS
    from .report import bar_plot, markdown_table, merge_runs, write_results

    merged = merge_runs(a.runs)
    rank = {m: i for i, m in enumerate(ALL_METHODS)}
    results = sorted(merged["results"], key=lambda r: (rank.get(r["method"], len(rank)), r.get("seed", 0)))
    out = Path(a.out)
    write_results(out, results, merged["config"])
    c = merged["config"]
    if any("fold" in r for r in results):     # cross-validation runs split by fold: the CV table
        from .folds import cv_table, margin_line

        folds = sorted({r["fold"] for r in results if "fold" in r})
        title = a.title or (f"MoNuSeg {c['folds']}-fold cross-validation, {c['labels']:.0%} labels, "
                            f"{c['steps']} steps, folds {','.join(map(str, folds))}")
        table = cv_table(results, title) + margin_line(results)
    else:
        title = a.title or f"MoNuSeg, {c['labels']:.0%} labels, {c['eval_split']} split, {c['steps']} steps"
        table = markdown_table(results, title=title)
    (out / "results.md").write_text(table, encoding="utf-8")
    bar_plot(results, out / "monuseg_dice.png", title)
    print(table)
    return 0


def cmd_bench_event_loop(a: argparse.Namespace) -> int:
    from .event_loop import run, run_first_use

    if a.first_use:
        r = run_first_use(Path(a.out), a.propose_after, a.preload, a.trace_gaps)
        print(json.dumps({k: r[k] for k in ("dock_open_ms", "viewer_only", "first_use", "first_mask_s", "marks_s_after_dock_open",
                                            "valid")}, indent=2))
        return 0 if r["valid"] else 1
    r = run(Path(a.out), a.idle_seconds, a.train_seconds, a.model, a.images, a.steps)
    print(json.dumps({k: r[k] for k in ("idle", "training", "round", "valid", "pass")}, indent=2))
    return 0 if r["valid"] else 1


def _bench_model_config(a: argparse.Namespace) -> ModelConfig:
    """The benchmarks' model: the defaults, with the encoder's BatchNorm mode from --encoder-norm
    (left out of the config when default, so default embedding caches keep their key)."""
    from ..model.segmenter import ModelConfig

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


def cmd_bench_precision(a: argparse.Namespace) -> int:
    from .precision import run_precision

    run_precision(a.out, a.device, a.precision, a.data, a.split, a.runs, a.quick)
    return 0


def cmd_bench_more_like_this(a: argparse.Namespace) -> int:
    from .more_like_this import MoreLikeThisConfig, markdown, run_more_like_this

    quick = dict(seeds=1, n_train=1, max_images=1, crop=256) if a.quick else {}
    doc = run_more_like_this(MoreLikeThisConfig(a.data, out=a.out, split=a.split, n_exemplars=a.exemplars,
                                                baseline=not a.no_baseline, **quick))
    print(markdown(doc))
    return 0


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    """Register `promptseg bench` and its subcommands on the top-level subparsers."""
    b = sub.add_parser("bench", help="benchmarks: latency, precision, monuseg, effort, aal, event-loop, prompts, "
                                     "more-like-this")
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
                         "the torch.compile'd encoder, compiled on the first image) or a bfloat16 copy (CPUs "
                         "with native bfloat16); the reference stays float32")
    bl.add_argument("--decoder-precision", choices=("float32", "bfloat16"), default="float32",
                    help="bfloat16: the decoder's image-sized products in bfloat16 (CPUs with native bfloat16)")
    bl.add_argument("--out", default="bench-out")
    bl.set_defaults(fn=cmd_bench)
    bq = bsub.add_parser("precision", help="a reduced-precision encoder against float32: accuracy, shapes, threads")
    bq.add_argument("--device", default="cpu")
    bq.add_argument("--precision", choices=("float32", "bfloat16", "float16", "float16-compiled"), default=None,
                    help="default: float16 on CUDA, bfloat16 on the CPU")
    bq.add_argument("--data", default=None, help="MoNuSeg-format folder (images/, masks/, captions.csv)")
    bq.add_argument("--split", default="val")
    bq.add_argument("--runs", type=int, default=5, help="set_image repeats per image and precision")
    bq.add_argument("--quick", action="store_true", help="one nuclei tile, one one-tile image, fewer thread repeats")
    bq.add_argument("--out", default="bench-precision")
    bq.set_defaults(fn=cmd_bench_precision)
    bm = bsub.add_parser("monuseg", help="label efficiency on MoNuSeg-format data, baselines in the same run")
    bm.add_argument("--data", required=True, help="folder with images/, masks/, captions.csv (image,split,caption)")
    bm.add_argument("--labels", default="0.25", help="labelled fraction of the train rows (0.25, 0.5)")
    bm.add_argument("--eval-split", default="val", choices=["val", "test"])
    bm.add_argument("--quick", action="store_true", help="CPU-affordable: 200 steps (U-Net 300), seed 0, main methods")
    bm.add_argument("--device", default="cpu")
    bm.add_argument("--methods", default=None, help="comma-separated (default: all; --quick: the main ones)")
    bm.add_argument("--steps", type=int, default=None, help="training steps per method (default 1500; --quick 200)")
    pixel_options = (   # the pixel baselines' own training settings (default: the shared ones)
        ("--unet-steps", "steps of the pixel baselines unet and litemedsam_ft (default: --steps)"),
        ("--unet-batch", "random crops per step of the pixel baselines (default 8; --quick 2)"),
        ("--unet-crop", "side of the U-Net's training crops and scoring tiles, also the student's "
                        "(default 256)"),
        ("--unet-width", "channels of the U-Net's first level, doubled at each of its four poolings "
                         "(default 32; --quick 16)"),
        ("--litemedsam-ft-steps", "steps of litemedsam_ft, if not those of the U-Net"),
        ("--litemedsam-ft-batch", "crops per step of litemedsam_ft, if not those of the U-Net"),
    )
    for flag, text in pixel_options:
        bm.add_argument(flag, type=int, default=None, help=text)
    bm.add_argument("--folds", type=int, default=None,
                    help="K > 1: cross-validation over the train and val images together, each of K folds "
                         "in turn the evaluation set; --labels of the rest labelled; mean ± sd over folds")
    bm.add_argument("--fold-ids", default=None,
                    help="with --folds: comma-separated folds to run, from 0 (default: all)")
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
    bv = bsub.add_parser("event-loop", help="napari's event-loop lateness, idle vs during Retrain (xvfb-run -a)")
    bv.add_argument("--out", required=True, help="folder for event_loop.json")
    bv.add_argument("--idle-seconds", type=float, default=10.0)
    bv.add_argument("--train-seconds", type=float, default=60.0, help="measure this long, then Cancel the round")
    bv.add_argument("--model", choices=["default", "tiny"], default="default", help="tiny: a test-size U-Net")
    bv.add_argument("--images", type=int, default=3, help="gold-labelled images in the bench project")
    bv.add_argument("--steps", type=int, default=100000, help="round max steps (the bench cancels it)")
    bv.add_argument("--first-use", action="store_true",
                    help="measure from opening the dock to the first mask on the nuclei sample instead")
    bv.add_argument("--propose-after", type=float, default=2.0,
                    help="with --first-use: seconds between opening the dock and clicking Propose")
    bv.add_argument("--preload", action="store_true",
                    help="with --first-use: import the model's modules before the window opens (as promptseg gui)")
    bv.add_argument("--trace-gaps", action="store_true",
                    help="with --first-use: sample the GUI thread's stack during each long gap (in first_use.json)")
    bv.set_defaults(fn=cmd_bench_event_loop)
    bx = bsub.add_parser("more-like-this", help="one-shot segmentation from a few gold instances (MoNuSeg format)")
    bx.add_argument("--data", required=True, help="folder with images/, masks/, captions.csv")
    bx.add_argument("--split", default="val")
    bx.add_argument("--exemplars", type=int, default=5, help="gold instances per exemplar set")
    bx.add_argument("--quick", action="store_true", help="CI-sized: 1 image, 1 train source, 1 draw, 256 px crops")
    bx.add_argument("--no-baseline", action="store_true", help="skip the decoder exemplar-token route")
    bx.add_argument("--out", default="bench-more-like-this")
    bx.set_defaults(fn=cmd_bench_more_like_this)
    bp = bsub.add_parser("prompts", help="text, box, click and LiteMedSAM-box Dice per target, with latency")
    bp.add_argument("--data", default=None, help="folder with images/, masks/, targets.csv (image,mask,target,...)")
    bp.add_argument("--make-dev", default=None, metavar="DIR",
                    help="first write the dev set (AAL slices, stardist and MoNuSeg val nuclei) to DIR")
    bp.add_argument("--quick", action="store_true", help="with --make-dev: the small CI variant")
    bp.add_argument("--make-cerebellar-check", default=None, metavar="DIR",
                    help="write the larger left-out click check (cerebellar structures on more Colin27 slices) to DIR")
    bp.add_argument("--monuseg", default=str(Path(os.environ.get("PROMPTSEG_DATA", "data")) / "monuseg"),
                    help="MoNuSeg-format folder for the dev set's nuclei (left out when missing)")
    bp.add_argument("--limit", type=int, default=None, help="score the first N targets only")
    bp.add_argument("--device", default="cpu")
    bp.add_argument("--out", default="bench-prompts")
    bp.add_argument("--zoom-side", type=int, default=None,
                    help="input side of the box zoom views' embeddings (default: the segmenter's)")
    bp.set_defaults(fn=cmd_bench_prompts)
