"""The gap tracer names what the watched thread ran during a long gap, and what held the
interpreter lock meanwhile."""
import time

from promptseg.napari.gap_trace import GapTracer


def _slow_python_step() -> None:
    t_end = time.perf_counter() + 0.25
    while time.perf_counter() < t_end:
        pass


def test_a_long_gap_is_attributed_to_the_function_that_ran_in_it():
    tracer = GapTracer(threshold_s=0.1)
    try:
        for _ in range(5):
            tracer.beat()
            time.sleep(0.01)
        tracer.beat()
        _slow_python_step()
        tracer.beat()
        time.sleep(0.01)
        tracer.beat()
    finally:
        gaps = tracer.stop()
    assert len(gaps) == 1
    gap = gaps[0]
    assert 240 <= gap["gap_ms"] < 1000
    assert gap["samples"] >= 5
    assert 0 < gap["own_cpu_ms"] <= gap["gap_ms"] + 1     # it worked, not waited
    assert any("_slow_python_step" in frame for frame in gap["watched"][0]["stack"])
