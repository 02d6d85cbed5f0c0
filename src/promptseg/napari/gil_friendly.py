"""Loading the model in a worker without stalling napari's GUI thread on the interpreter lock.

A worker thread that imports torch holds the interpreter lock in two places where the GUI
thread cannot take it back at the next switch interval:

- ``dlopen`` of torch's shared libraries (torch's own ``ctypes.CDLL`` calls and the extension
  module's import both keep the lock while the loader maps, relocates and initialises them).
  ``preload_torch_libraries`` opens the same files first through libc's ``dlopen`` called as
  a ctypes foreign function, which releases the lock; torch's own opens then find them loaded.
- the cyclic garbage collector: the imports allocate enough to start full collections, each
  a walk over every object of napari's process with the lock held. ``collector_paused``
  pauses collection while the model loads and leaves what the load made in the oldest
  generation, as if it had survived the collections it skipped. Freezing the objects for good
  would make later full collections shorter, but an image layer frozen that way is never
  freed once closed (layers are freed by the collector, not by reference counts).

And in a third, where it could give the lock back but gets half of it: torch's import runs
seconds of Python, and two threads that both run Python share the lock turn about, so a GUI
turn of napari's that overlaps it takes twice as long. ``StepAside`` makes the loading thread
wait at its next import statement while the GUI thread is in the middle of a turn (its
heartbeat, a short timer the GUI runs meanwhile, is late).
"""
from __future__ import annotations

import builtins
import ctypes
import gc
import glob
import importlib.util
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# torch's CUDA wheels, in the order torch's __init__ preloads them (libcublasLt before libcublas)
CUDA_WHEEL_LIBRARIES = (
    ("cublas", "libcublasLt.so.*[0-9]"), ("cublas", "libcublas.so.*[0-9]"), ("cudnn", "libcudnn.so.*[0-9]"),
    ("cuda_nvrtc", "libnvrtc.so.*[0-9]"), ("cuda_nvrtc", "libnvrtc-builtins.so.*[0-9]"),
    ("cuda_runtime", "libcudart.so.*[0-9]"), ("cuda_cupti", "libcupti.so.*[0-9]"), ("cufft", "libcufft.so.*[0-9]"),
    ("curand", "libcurand.so.*[0-9]"), ("nvjitlink", "libnvJitLink.so.*[0-9]"),
    ("cusparse", "libcusparse.so.*[0-9]"), ("cusparselt", "libcusparseLt.so.*[0-9]"),
    ("cusolver", "libcusolver.so.*[0-9]"), ("nccl", "libnccl.so.*[0-9]"), ("nvshmem", "libnvshmem_host.so.*[0-9]"),
    ("cufile", "libcufile.so.*[0-9]"), ("nvtx", "libnvToolsExt.so.*[0-9]"),
)


def _torch_folder() -> Path | None:
    if "torch" in sys.modules:
        return None                        # imported already: nothing left to open
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(locations[0]) if locations else None


def torch_library_sequence() -> list[tuple[Path, int]]:
    """The shared libraries torch's import opens, with their dlopen modes, in its order (empty
    when torch is imported already, absent, or not on Linux)."""
    folder = _torch_folder()
    if folder is None or not sys.platform.startswith("linux"):
        return []
    lib = folder / "lib"
    sequence = [(lib / "libtorch_global_deps.so", os.RTLD_NOW | os.RTLD_GLOBAL)]
    wheels = folder.parent / "nvidia"
    for sub, pattern in CUDA_WHEEL_LIBRARIES:
        found = sorted(glob.glob(str(wheels / sub / "lib" / pattern)))
        if found:
            sequence.append((Path(found[0]), os.RTLD_NOW))
    sequence.append((lib / "libtorch.so", os.RTLD_NOW))
    return [(path, mode) for path, mode in sequence if path.is_file()]


def _cuda_runtime_mapped() -> bool:
    try:
        return "libcudart.so" in Path("/proc/self/maps").read_text()
    except OSError:
        return False


def preload_torch_libraries() -> list[str]:
    """Open torch's shared libraries with the interpreter lock released; returns the names
    opened. Best effort: it stops at the first library that does not open, and torch's import
    then opens the rest itself as it always does."""
    sequence = torch_library_sequence()
    if not sequence:
        return []
    try:
        libc = ctypes.CDLL(None)
        dlopen = libc.dlopen
    except (OSError, AttributeError):
        return []
    dlopen.restype, dlopen.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_int]
    opened: list[str] = []
    cuda = True
    for i, (path, mode) in enumerate(sequence):
        if i == 1:     # torch preloads its CUDA wheels only when its global deps brought in the CUDA runtime
            cuda = _cuda_runtime_mapped()
        if 0 < i < len(sequence) - 1 and not cuda:
            continue
        if not dlopen(os.fsencode(path), mode):   # a foreign call: the lock is released meanwhile
            break
        opened.append(path.name)
    return opened


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic collector for the block. At its end, what the block made moves to the
    oldest generation (through ``gc.freeze`` and back), so no young-generation collection walks
    it all at once; the next full collection comes when it would have, and still frees
    everything that became garbage (nothing stays frozen unless the process froze it before)."""
    was_enabled = gc.isenabled()
    frozen_before = gc.get_freeze_count()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if frozen_before == 0:
            gc.unfreeze()
        if was_enabled:
            gc.enable()


class StepAside:
    """The GUI thread calls ``beat()`` from a short timer; inside ``imports()`` the calling
    thread's import statements first wait while the last beat is older than ``late_s`` (the
    GUI thread is in a turn), at most ``cap_s`` in all per turn: a GUI thread that is not in a
    short turn but waits (for a lock the loading thread holds, say) stops the waiting until
    it beats again."""

    def __init__(self, late_s: float = 0.008, cap_s: float = 0.1) -> None:
        self.late_s, self.cap_s = late_s, cap_s
        self.last_beat = time.perf_counter()
        self._given_up_on = -1.0             # the beat after which a wait reached the cap
        self.waited_s = 0.0                  # in all, for the record

    def beat(self) -> None:
        self.last_beat = time.perf_counter()

    def wait_for_gui(self) -> None:
        beat = self.last_beat
        if beat == self._given_up_on:
            return                           # waited the cap for this turn already: the GUI is stuck
        start = now = time.perf_counter()
        while now - self.last_beat > self.late_s:
            if now - start >= self.cap_s:
                self._given_up_on = beat
                break
            time.sleep(0.001)                # the lock is the GUI thread's meanwhile
            now = time.perf_counter()
        self.waited_s += now - start

    @contextmanager
    def imports(self) -> Iterator[None]:
        """The calling thread's imports step aside inside the block (other threads' pass)."""
        thread = threading.get_ident()
        importer = builtins.__import__

        def stepping_aside(*args, **kwargs):
            if threading.get_ident() == thread:
                self.wait_for_gui()
            return importer(*args, **kwargs)

        builtins.__import__ = stepping_aside
        try:
            yield
        finally:
            if builtins.__import__ is stepping_aside:
                builtins.__import__ = importer
