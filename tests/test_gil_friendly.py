"""Loading torch's libraries with the interpreter lock released, and pausing the collector."""
import gc
import subprocess
import sys
import textwrap

from promptseg.napari.gil_friendly import collector_paused


def test_torch_libraries_open_before_the_import_and_torch_then_works():
    # a fresh interpreter: this one has torch imported already
    code = textwrap.dedent("""
        import sys
        from pathlib import Path
        from promptseg.napari.gil_friendly import preload_torch_libraries
        opened = preload_torch_libraries()
        maps = Path("/proc/self/maps").read_text()
        assert "torch" not in sys.modules
        import torch
        x = torch.nn.functional.conv2d(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 3, 3))
        print(opened[0], opened[-1], "libtorch_cpu.so" in maps, float(x.sum()))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["libtorch_global_deps.so", "libtorch.so", "True", "36.0"]


def test_nothing_is_opened_once_torch_is_imported():
    import torch  # noqa: F401
    from promptseg.napari.gil_friendly import preload_torch_libraries

    assert preload_torch_libraries() == []


def test_the_collector_is_paused_in_the_block_and_what_it_made_stays_collectable():
    import weakref

    class Node:
        pass

    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    with collector_paused():
        assert not gc.isenabled()
        cycle = Node()
        cycle.me = cycle                 # garbage only the cyclic collector frees
        alive = weakref.ref(cycle)
        made = [[i] for i in range(1000)]
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen        # nothing left frozen
    assert gc.get_count()[0] < len(made)          # no young generation to walk at once
    del cycle
    gc.collect()
    assert alive() is None


def test_imports_wait_while_the_gui_is_in_a_turn_and_go_on_at_its_next_beat(tmp_path, monkeypatch):
    """A loading thread's import waits while the heartbeat is late, and runs once it beats;
    other threads' imports never wait; the import hook is back after the block."""
    import builtins
    import threading
    import time

    from promptseg.napari.gil_friendly import StepAside

    for name in ("aside_a", "aside_b"):
        (tmp_path / f"{name}.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    aside = StepAside(late_s=0.05, cap_s=30.0)
    hook = builtins.__import__
    done = threading.Event()

    def load():
        with aside.imports():
            import aside_a  # noqa: F401
        done.set()

    aside.last_beat = time.perf_counter() - 1.0       # the GUI thread is in a long turn
    loader = threading.Thread(target=load)
    loader.start()
    time.sleep(0.3)
    assert not done.is_set() and "aside_a" not in sys.modules
    import aside_b  # noqa: F401                      # this thread is not the one stepping aside
    aside.beat()                                      # the turn is over
    assert done.wait(5.0) and "aside_a" in sys.modules
    loader.join()
    assert builtins.__import__ is hook and aside.waited_s >= 0.25


def test_a_waiting_import_goes_on_after_the_cap():
    """A GUI turn that itself waits for the loading thread (an import it holds) is not a deadlock."""
    import time

    from promptseg.napari.gil_friendly import StepAside

    aside = StepAside(late_s=0.01, cap_s=0.2)
    aside.last_beat = time.perf_counter() - 10.0
    t = time.perf_counter()
    aside.wait_for_gui()
    assert 0.2 <= time.perf_counter() - t < 2.0


def test_a_gui_thread_that_waits_rather_than_turns_costs_one_cap_not_one_per_import():
    """The GUI thread blocked (on a lock the loading thread holds, say) never beats: after one
    capped wait the imports go on without waiting, until it beats again."""
    import time

    from promptseg.napari.gil_friendly import StepAside

    aside = StepAside(late_s=0.01, cap_s=0.2)
    aside.last_beat = time.perf_counter() - 10.0
    t = time.perf_counter()
    for _ in range(50):
        aside.wait_for_gui()
    assert time.perf_counter() - t < 1.0
    aside.beat()
    aside.last_beat -= 10.0                  # a new turn that runs long: one capped wait again
    t = time.perf_counter()
    aside.wait_for_gui()
    assert time.perf_counter() - t >= 0.2
