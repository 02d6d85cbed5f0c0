"""Benchmark outputs: results.json, a markdown table (mean ± std over seeds, delta vs the
supervised baseline) and a bar chart."""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import textwrap
from pathlib import Path

import numpy as np

from ..project import atomic_write_json

SCORES = ("dice", "miou", "dice_224", "miou_224")


def run_environment(device: str) -> dict:
    """Machine, software and commit facts recorded with every benchmark result."""
    import torch

    commit = None
    try:
        repo = Path(__file__).resolve().parents[3]
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    env = {"date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "device": device,
           "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
           "platform": platform.platform(), "commit": commit}
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name()
    return env


def write_results(out: str | Path, results: list[dict], config: dict) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    atomic_write_json(path, {"results": results, "config": config})
    return path


def merge_runs(run_dirs: list[str | Path]) -> dict:
    """Join the results.json of runs that split one benchmark by seed, method or cross-validation
    fold (parallel processes, several machines or sessions). Runs with a different setting (labels, split, steps...) are
    an error: their numbers would not be comparable in one table."""
    keys = ("labels", "eval_split", "steps", "crop", "batch", "views", "subset_seed", "label_jitter", "stain_views",
            "folds")
    before = {"label_jitter": 0.0, "stain_views": 0, "folds": 0}   # what a run written before the setting existed used
    results, configs = [], []
    for d in run_dirs:
        path = Path(d) / "results.json"
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path} not found: is {d} a benchmark output folder?") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from None
        cfg = doc.get("config", {})
        if configs:
            diff = [k for k in keys if cfg.get(k, before.get(k)) != configs[0].get(k, before.get(k))]
            if diff:
                raise ValueError(f"{d} differs from {run_dirs[0]} in {', '.join(diff)}; merge like runs only")
        seen = {(r["method"], r.get("seed"), r.get("fold")) for r in results}
        dup = [r["method"] for r in doc.get("results", []) if (r["method"], r.get("seed"), r.get("fold")) in seen]
        if dup:
            raise ValueError(f"{d} repeats method/seed/fold triples already merged: {sorted(set(dup))}")
        results += doc.get("results", [])
        configs.append({**cfg, "run_dir": str(d)})
    if not results:
        raise ValueError("no results in the given runs")
    return {"results": results, "config": {**{k: configs[0].get(k) for k in keys}, "runs": configs}}


def aggregate(results: list[dict], scores: tuple[str, ...] = SCORES) -> list[dict]:
    """One row per method (first-seen order): n seeds, mean and std of each score and seconds."""
    order: list[str] = []
    for r in results:
        if r["method"] not in order:
            order.append(r["method"])
    rows = []
    for m in order:
        rs = [r for r in results if r["method"] == m]
        row = {"method": m, "n": len(rs), "seconds": float(np.mean([r["seconds"] for r in rs]))}
        for k in scores:
            vals = np.array([r[k] for r in rs], float)
            row[k] = float(vals.mean())
            row[k + "_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        rows.append(row)
    return rows


def _pm(mean: float, std: float, n: int) -> str:
    return f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if n > 1 else "")


def markdown_table(results: list[dict], baseline: str = "supervised", title: str | None = None) -> str:
    """Scores in percent; Δ Dice is the method's mean Dice minus the baseline's (same run)."""
    rows = aggregate(results)
    base = next((r for r in rows if r["method"] == baseline), None)
    lines = [f"### {title}", ""] if title else []
    lines += ["Scores in %, per image then averaged over the evaluation images; ± is the std over seeds.", ""]
    lines += ["| method | seeds | Dice | mIoU | Dice 224² | mIoU 224² | Δ Dice vs " + baseline + " | s / seed |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        delta = "-" if base is None or r is base else f"{100 * (r['dice'] - base['dice']):+.2f}"
        lines.append(f"| {r['method']} | {r['n']} | " + " | ".join(_pm(r[k], r[k + '_std'], r['n']) for k in SCORES)
                     + f" | {delta} | {r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def bar_plot(results: list[dict], path: str | Path, title: str, keys: tuple[str, ...] = ("dice", "dice_224")) -> Path | None:
    """Grouped bars (mean ± std over seeds) per method; None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = aggregate(results)
    x = np.arange(len(rows))
    width = 0.8 / len(keys)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(rows) + 2), 4.2))
    for j, k in enumerate(keys):
        means = [100 * r[k] for r in rows]
        stds = [100 * r[k + "_std"] for r in rows]
        bars = ax.bar(x + (j - (len(keys) - 1) / 2) * width, means, width, yerr=stds, capsize=3, label=k)
        for b, v in zip(bars, means):
            ax.text(b.get_x() + b.get_width() / 2, b.get_height() + 0.5, f"{v:.1f}", ha="center", fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels([r["method"] for r in rows], rotation=25, ha="right")
    ax.set_ylabel("score (%)")
    lo = min(100 * r[k] for r in rows for k in keys)
    ax.set_ylim(max(0.0, lo - 15), 100)
    return finish_bar_plot(fig, ax, title, path)


def finish_bar_plot(fig, ax, title: str, path: str | Path) -> Path:
    """Title, legend, layout; write the PNG and free the figure."""
    import matplotlib.pyplot as plt

    ax.set_title(textwrap.fill(title, 70), fontsize=10)   # long titles wrap instead of running off
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
