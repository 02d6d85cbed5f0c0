"""Save and restore an interrupted round: student, EMA teacher, optimiser, schedule and every
random stream, as safetensors + JSON (never pickle), each file written atomically.

``promptseg train PROJECT --resume`` reloads this and continues from the saved step, so an
interrupted-then-resumed round computes the same weights as an uninterrupted one.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..fsutil import atomic_path

TENSORS = "state.safetensors"
META = "state.json"


def _rng_to_json(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _rng_from_json(data: list) -> tuple:
    return data[0], tuple(data[1]), data[2]


def save_state(trainer, folder: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write the trainer's state into ``folder`` (tensors first, then the JSON that names the
    step: a state is only valid once its JSON exists and matches)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for k, v in trainer.model.trainable_state_dict().items():
        tensors[f"student.{k}"] = v.detach().cpu().contiguous()
    for k, v in trainer.teacher.trainable_state_dict().items():
        tensors[f"teacher.{k}"] = v.detach().cpu().contiguous()
    opt = trainer.opt.state_dict()
    for pid, st in opt["state"].items():
        for name, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"opt.{pid}.{name}"] = v.detach().cpu().contiguous()
    tensors["rng.torch_gen"] = trainer.gen.get_state()
    tensors["rng.torch_global"] = torch.get_rng_state()
    meta = {
        "step": trainer.step_count,
        "config": trainer.cfg.to_dict(),
        "sched": trainer.sched.state_dict(),
        "opt_param_groups": opt["param_groups"],
        "opt_scalar_state": {str(pid): {n: v for n, v in st.items() if not isinstance(v, torch.Tensor)}
                             for pid, st in opt["state"].items()},
        "rng_l": _rng_to_json(trainer.rng_l.getstate()),
        "rng_u": _rng_to_json(trainer.rng_u.getstate()),
        **(extra or {}),
    }
    with atomic_path(folder / TENSORS) as tmp:
        save_file(tensors, str(tmp))
    with atomic_path(folder / META) as tmp:
        Path(tmp).write_text(json.dumps(meta))
    return folder


def read_meta(folder: str | Path) -> dict[str, Any] | None:
    p = Path(folder) / META
    if not p.exists() or not (Path(folder) / TENSORS).exists():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def load_state(trainer, folder: str | Path) -> dict[str, Any]:
    """Restore ``trainer`` (built with the same data and config) from ``folder``."""
    meta = read_meta(folder)
    if meta is None:
        raise ValueError(f"no complete training state in {folder}")
    tensors = load_file(str(Path(folder) / TENSORS))
    for prefix, module in (("student.", trainer.model), ("teacher.", trainer.teacher)):
        sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        missing, _ = module.load_state_dict(sd, strict=False)
        if any(not m.startswith("backbone.") for m in missing):
            raise ValueError(f"training state in {folder} does not match the model: missing {missing[:3]}")
    opt_state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, pid, name = k.split(".", 2)
            opt_state.setdefault(int(pid), {})[name] = v
    for pid, scal in meta["opt_scalar_state"].items():
        opt_state.setdefault(int(pid), {}).update(scal)
    trainer.opt.load_state_dict({"state": opt_state, "param_groups": meta["opt_param_groups"]})
    trainer.sched.load_state_dict(meta["sched"])
    trainer.gen.set_state(tensors["rng.torch_gen"])
    torch.set_rng_state(tensors["rng.torch_global"])
    trainer.rng_l.setstate(_rng_from_json(meta["rng_l"]))
    trainer.rng_u.setstate(_rng_from_json(meta["rng_u"]))
    trainer.step_count = int(meta["step"])
    return meta
