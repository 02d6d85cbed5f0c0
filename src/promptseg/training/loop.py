"""The optimiser step and the step loop every trainer shares: stage 1, the semi-supervised
round (in process and as ``promptseg train``) and the encoder fine-tuning benchmark."""
from __future__ import annotations

import math
import time
from typing import Callable

import torch


def warmup_cosine(opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """20 steps of linear warm-up, then cosine decay to 0 at ``steps``."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))


def optimiser_step(opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
                   params: list[torch.Tensor], losses: dict[str, torch.Tensor], step: int) -> dict:
    """Backward of ``losses['total']``, clip to norm 1, step the optimiser and the schedule.
    Returns the step's record: the losses as floats, ``step`` (steps done, this one
    included) and the last parameter group's learning rate."""
    opt.zero_grad(set_to_none=True)
    losses["total"].backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    sched.step()
    return {**{k: float(v.detach()) for k, v in losses.items()}, "step": step, "lr": sched.get_last_lr()[-1]}


def run_steps(step: Callable[[], dict], n_steps: int, done: int = 0,
              on_step: Callable[[dict], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> dict:
    """Call ``step`` until ``n_steps`` steps are done (``done`` of them already were) or
    ``should_stop()`` says so before a step. Each record gains ``it_s``, the steps per second
    of this loop, and goes to ``on_step``; returns the last record ({} if none ran)."""
    t0, start, last = time.time(), done, {}
    while done < n_steps:
        if should_stop is not None and should_stop():
            break
        last = step()
        done += 1
        last["it_s"] = (done - start) / (time.time() - t0)
        if on_step is not None:
            on_step(last)
    return last
