"""Annotation readers/writer, mask conversion, validation and ``OpenImagesDataset``.

Kept light: submodules (and PIL / scikit-image / lxml) load only when used, so
``python -m dataset --help`` starts fast.
"""
from __future__ import annotations

_LAZY = {
    "OpenImagesDataset": "dataset.openimages",
    "load_openimages": "dataset.openimages",
    "write_voc": "dataset.voc",
    "read_voc": "dataset.voc",
    "read_cvat": "dataset.cvat",
    "read_labelme": "dataset.labelme",
    "read_file": "dataset.formats",
    "read_dir": "dataset.formats",
    "detect_format": "dataset.formats",
    "record_to_masks": "dataset.convert",
    "validate_record": "dataset.check",
    "check_dir": "dataset.check",
    "Problem": "dataset.check",
    "Report": "dataset.check",
    "assign_split": "dataset.splits",
    "AnnotationError": "dataset._xml",
    "PathEscapeError": "dataset._xml",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError("module 'dataset' has no attribute %r" % name)
    import importlib
    value = getattr(importlib.import_module(module.replace("dataset", "", 1), __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
