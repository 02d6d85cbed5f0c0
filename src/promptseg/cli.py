"""`promptseg` command line: demo, init, propose, info, gui."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from . import __version__
from .bench.commands import add_bench_parser
from .training.round import add_round_arguments, run_parsed

if TYPE_CHECKING:
    from .project import Project


def cmd_demo(a: argparse.Namespace) -> int:
    from .device import resolve_device, use_all_cores
    from .workflow.demo import DemoConfig, format_table, run_demo

    use_all_cores()
    cfg = DemoConfig.quick() if a.quick else DemoConfig()
    cfg.sample = a.sample
    if a.rounds:
        cfg.schedule = cfg.schedule.overridden(rounds=a.rounds)
    report = run_demo(a.out, cfg, device=resolve_device(a.device))
    print()
    print(format_table(report))
    print(f"\nreport: {Path(a.out) / 'report.json'}  ({report['seconds']:.0f} s)")
    return 0


def _image_files(folder: Path, what: str = "images") -> list[Path]:
    from .io import SUPPORTED_SUFFIXES

    if not folder.is_dir():
        raise SystemExit(f"error: the {what} folder {folder} does not exist (or is not a folder)")
    files = [p for p in sorted(folder.iterdir()) if p.is_file() and
             any(p.name.lower().endswith(s) for s in SUPPORTED_SUFFIXES)]
    if not files:
        raise SystemExit(f"error: no {what} ({', '.join(SUPPORTED_SUFFIXES)}) in {folder}")
    return files


def cmd_init(a: argparse.Namespace) -> int:
    from .model.text import split_prompts
    from .project import Project
    from .project.seed import check_inputs, seed_project

    classes = split_prompts(";".join(a.cls)) if a.cls else []
    if a.masks and not classes:
        raise SystemExit("error: --masks needs --class NAME (or 'a; b; c' for mask values 1, 2, 3)")
    if a.labelled is not None and a.labelled < 0:
        raise SystemExit(f"error: --labelled must be 0 or more, got {a.labelled}")
    images = _image_files(Path(a.images))
    masks = {p.name.split(".")[0]: p for p in _image_files(Path(a.masks), "masks")} if a.masks else {}
    problems = check_inputs(images, masks, classes)   # every file read once before anything is created
    if problems:
        raise SystemExit("error: nothing was created or changed; fix these inputs first:\n  " + "\n  ".join(problems))
    with Project.open_or_create(a.project) as proj:
        n_images, seeded = seed_project(proj, images, masks, classes, a.labelled)
        print(f"project {proj.root}: {n_images} images, {seeded} gold labels, "
              f"classes: {[c.name for c in proj.classes()]}")
    return 0


def _tiles_shown(name: str) -> Callable[[int, int], None]:
    """A progress callback that shows a large image's embedding on stderr (tiles done / total)."""
    def show(done: int, total: int) -> None:
        if total > 16:
            print(f"\r{name}: embedded {done}/{total} tiles", end="\n" if done == total else "",
                  file=sys.stderr, flush=True)
    return show


def cmd_propose(a: argparse.Namespace) -> int:
    from .device import resolve_device, use_all_cores
    from .model.text import split_prompts
    from .project import Project
    from .workflow.session import AnnotationSession

    use_all_cores()
    prompts = split_prompts(a.prompt)
    proj = Project.open(a.project)
    session = AnnotationSession.for_project(proj)
    device = resolve_device(a.device)
    recs = [proj.image(a.image)] if a.image else proj.unlabelled_images()
    if not recs:
        print("nothing to propose: every image has an accepted label (use --image NAME)")
        return 0
    for i, rec in enumerate(recs):
        t0 = time.time()
        proposed = session.propose(proj.read_image(rec), prompts, device=device,
                                    progress=_tiles_shown(rec.name))
        lab, errors = session.store(rec, proposed, prompt=a.prompt)
        for e in errors:
            print(f"warning: {e}", file=sys.stderr)
        r = proposed.result
        pres = ", ".join(f"{n} {p:.2f}" for n, p in zip(r.prompts, r.presence))
        who = "the default model" if lab.model_version is None else f"model v{lab.model_version}"
        print(f"[{i + 1}/{len(recs)}] {rec.name}: proposal label rev {lab.version} by {who} ({pres}, "
              f"uncertainty {proposed.uncertainty:.3f}) {time.time() - t0:.1f} s")
    return 0


def cmd_info(a: argparse.Namespace) -> int:
    from .project import Project
    from .project.lock import round_lock_holder
    from .project.paths import SpaceError

    try:
        proj = Project.open(a.project)
    except SpaceError as exc:   # a report needs no writes: read what was last checkpointed
        print(f"note: {exc}; showing the project read-only", file=sys.stderr)
        proj = Project.open_read_only(a.project)
    with proj:
        s = proj.summary()
        s["classes"] = [c.name for c in proj.classes()]
        s["round_running"] = round_lock_holder(proj.root)   # {"pid", "started"} of a live round, or null
        s["mask_sources"] = mask_sources(proj)
        print(json.dumps(s, indent=2, default=str))
    return 0


def mask_sources(proj: Project) -> dict:
    """Where the project's stored masks came from, per source (text, box, click, exemplar,
    painted): labels, pixels, objects, Dice against their proposal and seconds, for the accepted
    labels (gold and corrected) and for the proposals."""
    import sqlite3

    try:
        return {"accepted": proj.source_summary(("gold", "corrected")), "proposed": proj.source_summary(("proposal",))}
    except sqlite3.OperationalError:    # a read-only project from before sources were recorded
        return {"note": "not recorded by the promptseg that last wrote this project"}


def cmd_gui(a: argparse.Namespace) -> int:
    try:
        from .napari.launch import open_viewer
    except ImportError:
        raise SystemExit("error: the GUI needs napari: pip install 'napari-promptseg[napari]'") from None
    open_viewer()
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="promptseg", description=__doc__)
    ap.add_argument("--version", action="version", version=f"promptseg {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="run the annotate/retrain loop headless on bundled sample data")
    d.add_argument("--quick", action="store_true", help="short rounds, for a quick check on a CPU")
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
    t = sub.add_parser("train", help="run a training round as JSON lines (see training/round.py)")
    add_round_arguments(t)
    t.set_defaults(fn=run_parsed)
    add_bench_parser(sub)
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
