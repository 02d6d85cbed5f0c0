"""The step loop the trainers share, and the one argument parser of a training round."""
import subprocess
import sys

import torch

from promptseg.training.loop import optimiser_step, run_steps, warmup_cosine


def test_run_steps_counts_from_done_and_stops_when_asked():
    calls, seen = [], []
    last = run_steps(lambda: calls.append(1) or {"step": len(calls)}, 5, done=2, on_step=seen.append)
    assert len(calls) == 3 and [r["step"] for r in seen] == [1, 2, 3] and last is seen[-1]
    assert all(r["it_s"] > 0 for r in seen)
    calls.clear()
    last = run_steps(lambda: calls.append(1) or {"step": len(calls)}, 10, should_stop=lambda: len(calls) >= 4)
    assert len(calls) == 4 and last["step"] == 4   # checked before each step
    assert run_steps(lambda: {"step": 1}, 3, done=3) == {}


def test_optimiser_step_clips_steps_and_records():
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    opt = torch.optim.SGD([w], lr=1.0)
    sched = warmup_cosine(opt, 100)
    rec = optimiser_step(opt, sched, [w], {"total": (w * torch.tensor([30.0, 40.0])).sum()}, 1)
    # The gradient (30, 40) is clipped to norm 1, i.e. (0.6, 0.8), times the warm-up's first rate 1/20.
    assert torch.allclose(w.detach(), torch.tensor([3.0 - 0.6 / 20, 4.0 - 0.8 / 20]))
    assert rec["total"] == 250.0 and rec["step"] == 1 and rec["lr"] == sched.get_last_lr()[-1]


def test_train_parses_with_the_rounds_parser_without_importing_torch():
    code = ("import sys; from promptseg.cli import build_parser; "
            "a = build_parser().parse_args(['train', 'p', '--max-steps', '3', '--method', 'supervised']); "
            "from promptseg.training.round import run_parsed; "
            "print(a.fn is run_parsed, a.project, a.max_steps, a.method, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "p", "3", "supervised", "False"]
    bad = subprocess.run([sys.executable, "-m", "promptseg.cli", "train", "p", "--method", "nope"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
