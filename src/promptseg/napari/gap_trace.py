"""Where a thread's long gaps come from: a watchdog thread samples the stacks of all threads
while a heartbeat is late, and each gap longer than a threshold is reported with what the
watched thread (and every other thread) was running meanwhile.

The watched thread calls ``beat()`` each turn of its loop (the event-loop benchmark's timer
tick). The watchdog wakes every ``period_s``; while the last beat is older than ``late_s`` it
takes ``sys._current_frames()``. The watchdog needs the interpreter lock too: when it wakes
late by about the gap itself, a thread held the lock in native code (an extension module's
initialisation, or Qt's own work on the GUI thread) or the process got no CPU, which
``lock_held_ms`` reports. ``own_cpu_ms`` is the CPU time the watched thread itself used in
the gap: far below the gap, it waited (for the lock, for a CPU, for a system lock) rather
than worked.
"""
from __future__ import annotations

import collections
import sys
import threading
import time
from collections import Counter


def _stack(frame, depth: int) -> list[str]:
    """The innermost ``depth`` frames, outermost first, as ``module-path:line function``."""
    out: list[str] = []
    while frame is not None and len(out) < depth:
        code = frame.f_code
        path = code.co_filename
        for marker in ("site-packages/", "/src/", "/lib/python3"):
            if marker in path:
                path = path.split(marker, 1)[1]
                break
        out.append(f"{path}:{frame.f_lineno} {code.co_name}")
        frame = frame.f_back
    return out[::-1]


class GapTracer:
    def __init__(self, threshold_s: float = 0.1, period_s: float = 0.005, late_s: float = 0.03,
                 depth: int = 14) -> None:
        self.watched = threading.get_ident()        # the thread that calls beat()
        self.threshold_s, self.period_s, self.late_s, self.depth = threshold_s, period_s, late_s, depth
        self.gaps: list[dict] = []
        self._samples: collections.deque = collections.deque(maxlen=4000)
        self._last_beat = time.perf_counter()
        self._last_cpu = time.thread_time()          # the watched thread's own CPU time
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="gap-tracer", daemon=True)
        self._thread.start()

    def beat(self) -> None:
        """Called by the watched thread each turn; closes a gap longer than the threshold."""
        now, cpu = time.perf_counter(), time.thread_time()
        start, cpu_start = self._last_beat, self._last_cpu
        self._last_beat, self._last_cpu = now, cpu
        if now - start >= self.threshold_s:
            samples = [s for s in list(self._samples) if start <= s[0] <= now]
            gap = self._summary(start, now, samples)
            gap["own_cpu_ms"] = round((cpu - cpu_start) * 1000, 1)
            self.gaps.append(gap)
        self._samples.clear()

    def stop(self) -> list[dict]:
        self._stop.set()
        self._thread.join(1.0)
        return self.gaps

    def _watch(self) -> None:
        names = {}
        previous = time.perf_counter()
        while not self._stop.wait(self.period_s):
            now = time.perf_counter()
            woke_late = now - previous - self.period_s
            previous = now
            if now - self._last_beat < self.late_s:
                continue
            if len(names) != threading.active_count():
                names = {t.ident: t.name for t in threading.enumerate()}
            frames = sys._current_frames()
            watched = frames.pop(self.watched, None)
            frames.pop(threading.get_ident(), None)
            others = {names.get(tid, str(tid)): _stack(f, 4) for tid, f in frames.items()}
            self._samples.append((now, woke_late, _stack(watched, self.depth), others))

    def _summary(self, start: float, end: float, samples: list) -> dict:
        """One gap: its length, the watched thread's most frequent stacks, the other threads'
        innermost frames, and how long the watchdog itself was held off (the lock held elsewhere)."""
        stacks = Counter(tuple(s[2]) for s in samples)
        others: Counter = Counter()
        for s in samples:
            for name, stack in s[3].items():
                if stack and "wait" not in stack[-1] and "select" not in stack[-1]:
                    others[f"{name}: {' < '.join(reversed(stack[-3:]))}"] += 1
        return {"at_abs": start, "gap_ms": round((end - start) * 1000, 1),
                "samples": len(samples),
                "lock_held_ms": round(max((s[1] for s in samples), default=0.0) * 1000, 1),
                "watched": [{"n": n, "stack": list(st)} for st, n in stacks.most_common(3)],
                "others": [{"n": n, "at": k} for k, n in others.most_common(4)]}
