"""napari glue: the only part of promptseg that imports Qt or napari.

Triton bundles its own LLVM; loading it after Mesa's llvmpipe (napari's OpenGL under Xvfb or
on machines without a GPU driver) segfaults. The napari process never compiles kernels
(training runs in a child process), so triton is kept out of it: torch then reports
"no triton" and works as usual.
"""
import sys

if "triton" not in sys.modules:
    sys.modules["triton"] = None  # type: ignore[assignment]  # import triton -> ImportError

from .none_guard import keep_none_alive

keep_none_alive()
