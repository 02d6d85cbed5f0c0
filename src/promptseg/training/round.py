"""A training round as its own process: ``promptseg train PROJECT`` (or ``python -m
promptseg.training.round PROJECT``, or ``torchrun --nproc_per_node N -m promptseg.training.round``).

Prints one JSON object per line on stdout with an ``"event"`` key: ``plan`` (how many images
each group embeds, and the steps), ``embed`` (per image: its group, the group's count and the
round's), ``start``, ``step``, ``eval``, ``checkpoint``, ``done`` or ``error``/``cancelled``. The round is
semi-supervised (ssl.py) over the accepted labels and every other project image, continuing
from the active model. Its training state is saved every ``--save-every`` steps and on
SIGTERM, so ``--resume`` continues an interrupted round. The new model version is
registered only once its files are complete: a killed round leaves the previous model
active. Under torchrun, DistributedDataParallel syncs gradients and only rank 0 writes.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path


# What a round trains: the decoder and its heads on the frozen encoder's cached embeddings.
ROUTE = "frozen encoder + decoder"


def emit(event: str, **data) -> None:
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"event": event, "time": round(time.time(), 3), **data}, default=float), flush=True)


class EmbedProgress:
    """Emits ``embed`` events for the images of each group (labelled, held-out, unlabelled):
    once when a group starts and after each image, with the counts of the group and the round."""

    def __init__(self, groups: dict[str, int]) -> None:
        self.groups = groups
        self.total = sum(groups.values())
        self.embedded = 0

    def group(self, name: str):
        """The ``progress(done, total, image)`` callback of group ``name``, announced at once."""
        count = self.groups[name]
        base = self.embedded
        if count:
            emit("embed", group=name, done=0, total=count, image=None, embedded=base, to_embed=self.total)

        def progress(done: int, total: int, image: str) -> None:
            self.embedded = base + done
            emit("embed", group=name, done=done, total=total, image=image, embedded=self.embedded,
                 to_embed=self.total)
        return progress


def _dist_setup(device: str) -> tuple[int, int, str]:
    """(rank, world size, device) -- initialises torch.distributed under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    import torch
    import torch.distributed as dist

    cuda = device.startswith("cuda")
    if cuda:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), world, device


def _unlabelled_items(proj, cache, strong_views: int, seed: int, progress):
    import numpy as np

    from ..inference.embeddings import tile_pixels
    from .augment import photometric_view
    from .dataset import volume_slice_indices
    from .types import UnlabelledItem

    recs = proj.unlabelled_images()
    out = []
    for i, rec in enumerate(recs):
        image = proj.read_image(rec)
        if len(rec.spatial_shape) == 3:   # a volume: some evenly spaced slices
            views = [(f"{rec.name}[{z}]", image[z], None) for z in volume_slice_indices(len(image))]
        else:
            views = [(rec.name, image, rec.sha256)]
        for name, img, sha in views:
            emb, grid = cache.get(img, sha)
            strong = strong_px = None
            if strong_views > 0:   # one photometric view per image, reproducible per image and seed
                rng = np.random.default_rng([seed, int(rec.sha256[:8], 16)])
                view = photometric_view(img, rng)
                strong, _ = cache.get(view)
                strong_px = tile_pixels(view, grid.tile)
            out.append(UnlabelledItem(name, emb, strong, tile_pixels(img, grid.tile), strong_px))
        progress(i + 1, len(recs), rec.name)
    return out


def _resumable_round(proj) -> tuple[int, Path] | None:
    from .train_state import read_meta

    for r in reversed(proj.rounds()):
        folder = proj.root / "rounds" / str(r.id)
        if r.status in ("running", "cancelled", "interrupted", "failed") and read_meta(folder) is not None:
            return r.id, folder
        if r.status == "done":
            return None
    return None


def _weights_sha(model) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.trainable_state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def _gather_shas(sha: str, world: int) -> list[str]:
    """Every rank's weight hash on rank 0, sent as bytes in a tensor (no pickling)."""
    if world <= 1:
        return [sha]
    import torch
    import torch.distributed as dist

    mine = torch.tensor(list(bytes.fromhex(sha)), dtype=torch.uint8)
    allv = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(allv, mine)
    return [bytes(t.tolist()).hex() for t in allv]


def default_views(device: str) -> int:
    """Dihedral views of each accepted label a round trains on, when not given: all 8 on a GPU,
    where an encoder pass is cheap; 1 on a CPU, where each view costs a full encoder pass per
    image once (views are cached)."""
    return 8 if str(device).startswith("cuda") else 1


def run_round(project_dir: str, device: str = "cpu", max_steps: int | None = 200, epochs: float | None = None,
              method: str = "promptseg", resume: bool = False, save_every: int = 25, strong_views: int = 0,
              val_fraction: float = 0.2, seed: int = 0, views: int | None = None) -> int:
    """One round under the project's round lock (rank 0 holds it; see project/lock.py)."""
    from ..model.checkpoint import DEFAULT_CHECKPOINT, WEIGHTS
    from ..project import Project
    from ..project.lock import exclusive_round

    if max_steps is not None and max_steps <= 0 or epochs is not None and not epochs > 0:
        raise ValueError(f"--max-steps and --epochs must be positive, got {max_steps} and {epochs}")
    args = (device, max_steps, epochs, method, resume, save_every, strong_views, val_fraction, seed, views)
    if int(os.environ.get("RANK", "0")) != 0:
        return _run_round(project_dir, *args)
    with Project.open(project_dir) as proj:
        active = proj.active_model()
        weights = (active.path if active else DEFAULT_CHECKPOINT) / WEIGHTS
        # The training state holds 4 copies of the weights, the new model 1.
        needed = 5 * weights.stat().st_size if weights.is_file() else 64 << 20
        with exclusive_round(proj, needed):
            return _run_round(project_dir, *args)


def _run_round(project_dir: str, device: str, max_steps: int | None, epochs: float | None, method: str,
               resume: bool, save_every: int, strong_views: int, val_fraction: float, seed: int,
               views: int | None) -> int:
    import numpy as np

    from ..inference.embeddings import EmbeddingCache
    from ..model.checkpoint import load_checkpoint, save_checkpoint
    from ..model.segmenter import ModelConfig, PromptSegModel
    from ..model.text import TextEncoder
    from ..project import Project
    from .dataset import class_prompts, items_from_sources, labelled_sources
    from .loop import run_steps
    from .ssl import SSLConfig, SSLTrainer, method_config
    from .train_state import load_state, save_state
    from .validate import validate

    rank, world, device = _dist_setup(device)
    stop = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    proj = Project.open(project_dir)
    active = proj.active_model()
    if active:
        model, _, cache_t = load_checkpoint(proj.model_dir(active.version))
    else:
        model, cache_t = PromptSegModel(ModelConfig()), {}
    model.to(device)
    cache = EmbeddingCache(proj.embeddings_dir, model, device)
    sources, classes = labelled_sources(proj)
    if not sources:
        raise ValueError("no accepted labels in the project yet: accept (or seed with `promptseg init --masks`) "
                         "at least one label before training")
    found = _resumable_round(proj) if resume else None
    if resume and found is None:
        raise ValueError("--resume: no interrupted round with a saved state in this project")
    if found:   # a resumed round trains on the views it started with
        if rank == 0:
            proj.resume_round(found[0])
        views = next(r for r in proj.rounds() if r.id == found[0]).config.get("views", 1)
    views = views or default_views(device)
    # Validation labels are held out whole: their turned views never reach training.
    order = np.random.default_rng(seed).permutation(len(sources))
    n_val = int(round(len(sources) * val_fraction)) if len(sources) >= 5 else 0
    n_train = len(sources) - n_val
    n_unlabelled = len(proj.unlabelled_images()) if method != "supervised" else 0
    embedding = EmbedProgress({"labelled": n_train, "held-out": n_val, "unlabelled": n_unlabelled})
    emit("plan", embed=embedding.groups, to_embed=embedding.total, views=views,
         steps=None if found or epochs else (max_steps or 200))
    train = items_from_sources([sources[i] for i in order[n_val:]], cache, classes, views,
                               embedding.group("labelled"))
    val = items_from_sources([sources[i] for i in order[:n_val]], cache, classes, 1, embedding.group("held-out"))
    unlabelled = (_unlabelled_items(proj, cache, strong_views, seed, embedding.group("unlabelled"))
                  if n_unlabelled else [])
    prompts = class_prompts(classes, TextEncoder(model.cfg.text_model, cache=cache_t))
    if found:
        round_id, state_dir = found
        cfg = SSLConfig.from_dict(json.loads((state_dir / "state.json").read_text())["config"])
    else:
        steps = max_steps or 200
        if epochs:   # one epoch = every labelled tile once
            per_epoch = math.ceil(sum(it.emb.shape[0] for it in train) / 2)
            steps = min(steps, max(1, int(epochs * per_epoch))) if max_steps else max(1, int(epochs * per_epoch))
        cfg = method_config(method, steps, seed)
        if active is not None:   # fine-tuning a trained model: a from-scratch lr can wreck it in a few steps
            cfg.supervised.lr = min(cfg.supervised.lr, 3e-4)
        round_id = proj.start_round({"stage": 2, "method": method, "route": ROUTE, "ssl": cfg.to_dict(),
                                     "labelled": n_train,
                                     "views": views, "unlabelled": len(unlabelled), "val": len(val), "world_size": world,
                                     "parent": active.version if active else None}) if rank == 0 else 0
        state_dir = proj.root / "rounds" / str(round_id)
    if world > 1:   # every rank must agree on the round (rank 0 owns the DB)
        import torch
        import torch.distributed as dist

        rid = torch.tensor([round_id])
        dist.broadcast(rid, 0)
        round_id, state_dir = int(rid), proj.root / "rounds" / str(int(rid))
    wrap = None
    if world > 1:
        import torch
        from torch.nn.parallel import DistributedDataParallel as DDP

        wrap = lambda m: DDP(m, find_unused_parameters=True,  # noqa: E731
                             device_ids=[torch.device(device).index] if device.startswith("cuda") else None)
    trainer = SSLTrainer(model, train, unlabelled, prompts, cfg, device, rank=rank, wrap=wrap)
    if found:
        load_state(trainer, state_dir)
    emit("start", round=round_id, method=method, route=ROUTE, config=cfg.to_dict(), steps=cfg.steps,
         labelled=n_train, views=views,
         train_items=len(train), val=len(val), unlabelled=len(unlabelled), classes=classes,
         parent=active.version if active else None, device=device, world_size=world,
         resumed_from=trainer.step_count if found else None)

    def on_step(record: dict) -> None:
        if trainer.step_count % 5 == 0 or trainer.step_count == cfg.steps:
            emit("step", **record)
        if rank == 0 and save_every and trainer.step_count % save_every == 0 and trainer.step_count < cfg.steps:
            save_state(trainer, state_dir)

    t0 = time.time()
    last = run_steps(trainer.step, cfg.steps, trainer.step_count, on_step, lambda: stop["flag"])
    if stop["flag"] and trainer.step_count < cfg.steps:
        if rank == 0:
            save_state(trainer, state_dir)
            proj.finish_round(round_id, "cancelled", {"steps": trainer.step_count, "resumable": True})
        emit("cancelled", round=round_id, steps=trainer.step_count, resumable=True)
        return 0
    trainer.finish()
    shas = _gather_shas(_weights_sha(model), world)
    if rank != 0:
        return 0
    metrics = {"loss": last.get("total"), "steps": trainer.step_count, "seconds": round(time.time() - t0, 1),
               "route": ROUTE}
    if val:
        s = validate(proj, model, val, prompts, classes, device)
        metrics.update(val_dice=s["dice"], val_dice_per_class=s["per_class"])
        emit("eval", dice=s["dice"], per_class=s["per_class"])
    with tempfile.TemporaryDirectory(dir=proj.root / "models") as tmp:
        save_checkpoint(model, tmp, classes=classes, prompt_cache=prompts.as_cache(),
                        extra={"round": round_id, "metrics": metrics})
        emit("checkpoint", path=tmp)
        rec = proj.register_model(Path(tmp), config={"round": round_id, "method": method, "route": ROUTE,
                                          "ssl": cfg.to_dict()},
                                  metrics=metrics, parent=active.version if active else None)
    proj.finish_round(round_id, "done", metrics, model_version=rec.version)
    shutil.rmtree(state_dir, ignore_errors=True)
    emit("done", round=round_id, model_version=rec.version, metrics=metrics, rank_weights_sha256=shas)
    return 0


def add_round_arguments(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """A round's options, on the parser of `promptseg train` or of this module's ``main``."""
    from .ssl_config import METHODS

    ap.add_argument("project")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    ap.add_argument("--max-steps", type=_positive(int), default=None, help="optimiser steps (default 200)")
    ap.add_argument("--epochs", type=_positive(float), default=None, help="passes over the labelled tiles")
    ap.add_argument("--method", default="promptseg", choices=METHODS)
    ap.add_argument("--resume", action="store_true", help="continue the last interrupted round")
    ap.add_argument("--save-every", type=int, default=25, help="steps between saved training states")
    ap.add_argument("--strong-views", type=int, default=0, choices=(0, 1),
                    help="embed one photometric strong view per unlabelled image (an encoder pass each)")
    ap.add_argument("--views", type=int, default=None, choices=range(1, 9), metavar="1-8",
                    help="dihedral views of each accepted label, each run through the encoder once "
                         "(default: 8 on a GPU, 1 on a CPU)")
    ap.add_argument("--seed", type=int, default=0)
    return ap


def main(argv: list[str] | None = None) -> int:
    return run_parsed(add_round_arguments(argparse.ArgumentParser(prog="promptseg train")).parse_args(argv))


def run_parsed(a: argparse.Namespace) -> int:
    """Run the round ``a`` names (parsed by :func:`add_round_arguments`); 1 after an error event."""
    try:
        from ..device import resolve_device

        rc = run_round(a.project, resolve_device(a.device), a.max_steps, a.epochs, a.method, a.resume,
                       a.save_every, a.strong_views, seed=a.seed, views=a.views)
    except Exception as exc:  # the parent process reads this line instead of a traceback
        from ..project import ProjectError

        user = isinstance(exc, ProjectError)   # a message for the user (busy, disk full, bad project)
        emit("error", message=str(exc) if user else f"{type(exc).__name__}: {exc}")
        if user:
            print(f"error: {exc}", file=sys.stderr)
        _dist_teardown(wait=False)   # the other ranks may be gone: do not wait for them
        return 1
    _dist_teardown(wait=True)
    return rc


def _positive(kind):
    def parse(text: str):
        v = kind(text)
        if not v > 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
        return v
    return parse


def _dist_teardown(wait: bool) -> None:
    """Leave the process group together and close it. A rank that exited while rank 0 was
    still validating and saving was sometimes aborted by gloo ("terminate called without an
    active exception": 3 of 10 two-rank rounds on this CPU), so the ranks meet first."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
