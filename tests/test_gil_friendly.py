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
