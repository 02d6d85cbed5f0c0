"""Headless image I/O, normalisation and sample data (no napari / Qt imports)."""

from .normalise import prepare_image, spatial_shape
from .readers import SUPPORTED_SUFFIXES, has_dicom_files, is_dicom_file, read_image
from .samples import Sample, SampleItem, list_samples, load_sample, sample_data_dir
from .writers import LABEL_SUFFIXES, write_labels

__all__ = [
    "read_image",
    "write_labels",
    "prepare_image",
    "spatial_shape",
    "is_dicom_file",
    "has_dicom_files",
    "SUPPORTED_SUFFIXES",
    "LABEL_SUFFIXES",
    "Sample",
    "SampleItem",
    "sample_data_dir",
    "list_samples",
    "load_sample",
]
