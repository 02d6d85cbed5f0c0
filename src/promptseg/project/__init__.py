"""Project store: a folder of images, label versions and models indexed by SQLite."""

from ..fsutil import array_sha256
from .atomic import (
    atomic_path,
    atomic_replace_dir,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_tiff,
)
from .errors import ProjectError
from .records import (
    LABEL_KINDS,
    MASK_SOURCES,
    ClassRecord,
    ImageRecord,
    LabelRecord,
    MaskSource,
    ModelRecord,
    RoundRecord,
)
from .schema import SCHEMA_VERSION
from .store import Project

__all__ = [
    "Project",
    "ProjectError",
    "ImageRecord",
    "ClassRecord",
    "LabelRecord",
    "ModelRecord",
    "RoundRecord",
    "LABEL_KINDS",
    "MASK_SOURCES",
    "MaskSource",
    "SCHEMA_VERSION",
    "array_sha256",
    "atomic_path",
    "atomic_replace_dir",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_tiff",
]
