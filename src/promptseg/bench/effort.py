"""`promptseg bench effort`: a simulated annotator on MoNuSeg-format data.

Start with a few labelled training images and train. Then each round the model proposes a
label for K new training images, the annotator "corrects" each proposal to the ground truth
(we record the fraction of pixels that changed and Dice(proposal, final)), the corrected
images join the labelled set, and the model is retrained, continuing from its weights.
Dice on the held-out split is measured after every round; that split is never trained on.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..model.segmenter import ModelConfig
from ..training.evaluate import dice, edited_fraction
from ..training.ssl_config import SSLConfig
from ..workflow.schedule import AnnotatorSchedule
from .data import by_split, load_seg_dir
from .methods import FT_METHODS, PIXEL_METHODS, SSL_METHODS, parse_methods, progress_printer, train_prompt_model
from .metrics import mean_scores
from .monuseg import fresh_model, item_of, predict_row, prepare, score_prompt_model
from .report import run_environment, write_results

EFFORT_SCHEDULE = AnnotatorSchedule(rounds=5, per_round=4, initial=2, steps_first=600, steps_per_round=300)
QUICK_EFFORT_SCHEDULE = AnnotatorSchedule(rounds=4, per_round=3, initial=2, steps_first=200, steps_per_round=100)


@dataclass
class EffortConfig:
    data: str
    out: str = "bench-effort"
    schedule: AnnotatorSchedule = field(default_factory=lambda: EFFORT_SCHEDULE)
    method: str | None = None       # default: promptseg
    eval_split: str = "val"
    seed: int = 0
    device: str = "cpu"
    cache: str | None = None
    crop: int | None = None         # training crop in pixels (default 128)
    batch: int | None = None        # tiles per step (default 2)
    label_jitter: float = SSLConfig.label_jitter   # photometric jitter of the labelled pixel crops
    bf16: bool = False              # encoder under bfloat16 autocast (CUDA only)
    quick: bool = False

    @classmethod
    def quick_defaults(cls, data: str, **kw) -> "EffortConfig":
        base = dict(schedule=QUICK_EFFORT_SCHEDULE, quick=True)
        base.update({k: v for k, v in kw.items() if v is not None})
        return cls(data=data, **base)

    def to_dict(self) -> dict:
        """The config as results.json records it, the schedule's fields at the top level."""
        flat = {k: v for k, v in asdict(self).items() if k != "schedule"}
        return {**flat, **self.schedule.to_dict()}


def annotation_order(names: list[str], seed: int) -> list[str]:
    """The order in which the simulated annotator meets the training images (fixed per seed)."""
    pool = sorted(names)
    return [pool[i] for i in np.random.default_rng(seed).permutation(len(pool))]


def run_effort(cfg: EffortConfig, model_cfg: ModelConfig | None = None, log: Callable[[str], None] = print) -> dict:
    model_cfg = model_cfg or ModelConfig()
    method = cfg.method or "promptseg"
    if method in PIXEL_METHODS + ("supervised_100",) + FT_METHODS:
        raise ValueError(f"the effort bench retrains a prompt model; {method} is not one")
    parse_methods(method, (method,))
    rows = load_seg_dir(cfg.data)
    train, evals = by_split(rows, "train"), by_split(rows, cfg.eval_split)
    if not evals or cfg.eval_split == "train":
        raise ValueError(f"need rows with split {cfg.eval_split!r} (not 'train') for evaluation")
    plan = cfg.schedule
    need = plan.initial + plan.rounds * plan.per_round
    if need > len(train):
        raise ValueError(f"{plan.initial} + {plan.rounds} rounds x {plan.per_round} = {need} images, "
                         f"but only {len(train)} training rows")
    order = annotation_order([r.name for r in train], cfg.seed)
    by_name = {r.name: r for r in train}
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    config = {**cfg.to_dict(), "method": method, "annotation_order": order[:need],
              "eval_images": [r.name for r in evals], "model": model_cfg.to_dict(), **run_environment(cfg.device)}
    log(f"effort bench: {method}, start with {plan.initial} labelled, {plan.rounds} rounds x {plan.per_round} "
        f"proposals, {len(evals)} {cfg.eval_split} images for evaluation")
    t_start = time.time()
    prep = prepare(train + evals, model_cfg, cfg.cache or out / "embeddings", cfg.device, log, bf16=cfg.bf16)
    items = {r.name: item_of(r, prep) for r in train}
    model = fresh_model(prep, model_cfg, cfg.seed, cfg.device)
    labelled = list(order[:plan.initial])
    rounds: list[dict] = []
    for r in range(plan.rounds + 1):
        proposals = []
        if r > 0:  # propose, "correct" to ground truth, accept
            for name in order[len(labelled):len(labelled) + plan.per_round]:
                pred = predict_row(model, name, prep, cfg.device)
                gt = by_name[name].mask
                proposals.append({"image": name, "edited_fraction": edited_fraction(pred, gt),
                                  "dice_proposal_vs_final": dice(pred == 1, gt == 1),
                                  "foreground_fraction": float(gt.mean())})
                labelled.append(name)
        steps = plan.steps(r)
        unl = [items[n] for n in order if n not in labelled] if method in SSL_METHODS else []
        t0 = time.time()
        train_prompt_model(method, model, [items[n] for n in labelled], unl, prep.prompts, steps, cfg.seed + r,
                           cfg.device, on_step=progress_printer(f"[round {r}]", steps, log),
                           crop_px=cfg.crop, batch=cfg.batch, label_jitter=cfg.label_jitter)
        train_s = time.time() - t0
        val = mean_scores(score_prompt_model(model, evals, prep, cfg.device))
        row = {"round": r, "labelled": len(labelled), "steps": steps, "train_seconds": round(train_s, 1),
               "val_dice": val["dice"], "val_dice_224": val["dice_224"], "proposals": proposals,
               "edited_fraction": float(np.mean([p["edited_fraction"] for p in proposals])) if proposals else None,
               "dice_proposal_vs_final": (float(np.mean([p["dice_proposal_vs_final"] for p in proposals]))
                                          if proposals else None)}
        rounds.append(row)
        write_results(out, rounds, config)
        log(f"round {r}: {len(labelled):2d} labelled  val Dice {100 * val['dice']:.2f}"
            + (f"  edited {100 * row['edited_fraction']:.2f}% of pixels  Dice(proposal, final) "
               f"{100 * row['dice_proposal_vs_final']:.2f}" if proposals else "") + f"  ({train_s:.0f} s training)")
    config["seconds"] = round(time.time() - t_start, 1)
    write_results(out, rounds, config)
    table = effort_table(rounds, f"Simulated annotator ({method}){' — CPU --quick' if cfg.quick else ''}")
    (out / "results.md").write_text(table, encoding="utf-8")
    effort_plot(rounds, out / "effort_curve.png", f"Annotation effort ({method})")
    log("\n" + table)
    return {"results": rounds, "config": config}


def effort_table(rounds: list[dict], title: str) -> str:
    lines = [f"### {title}", "", "| round | labelled | edited pixels (accepted proposals) | Dice(proposal, final) "
             "| val Dice | val Dice 224² |", "|---|---|---|---|---|---|"]
    for r in rounds:
        ef = "-" if r["edited_fraction"] is None else f"{100 * r['edited_fraction']:.2f}%"
        dp = "-" if r["dice_proposal_vs_final"] is None else f"{100 * r['dice_proposal_vs_final']:.2f}"
        lines.append(f"| {r['round']} | {r['labelled']} | {ef} | {dp} | {100 * r['val_dice']:.2f} | "
                     f"{100 * r['val_dice_224']:.2f} |")
    return "\n".join(lines) + "\n"


def effort_plot(rounds: list[dict], path: str | Path, title: str) -> Path | None:
    """Edited fraction and Dice(proposal, final) per round, with held-out Dice; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    prop = [r for r in rounds if r["edited_fraction"] is not None]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6))
    a1.plot([r["round"] for r in prop], [100 * r["edited_fraction"] for r in prop], "o-", color="C3")
    a1.set_xlabel("round")
    a1.set_ylabel("edited pixels per accepted image (%)")
    a1.set_ylim(bottom=0)
    a1.set_title("correction effort")
    a2.plot([r["round"] for r in prop], [100 * r["dice_proposal_vs_final"] for r in prop], "o-",
            label="Dice(proposal, final)")
    a2.plot([r["round"] for r in rounds], [100 * r["val_dice"] for r in rounds], "s--", label="held-out Dice")
    a2.set_xlabel("round")
    a2.set_ylabel("Dice (%)")
    a2.legend(fontsize=8)
    a2.set_title("proposal quality")
    from matplotlib.ticker import MaxNLocator

    for ax in (a1, a2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
