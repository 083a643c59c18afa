"""Quiet TensorFlow start-up for the command-line tools (train.py, evaluate.py, mrcnn-export).

TensorFlow prints its start-up lines before its C++ logging is initialised, so
TF_CPP_MIN_LOG_LEVEL does not hide them: the oneDNN and "Could not find cuda drivers" notes
come twice (two shared libraries load), and on CPU-only machines "failed call to cuInit:
... CUDA error" follows. ``quiet_tensorflow_startup()`` sets TF_CPP_MIN_LOG_LEVEL (default 2,
the user's value wins) and makes the first ``import tensorflow``, wherever it happens, run
with file descriptor 2 captured: lines below that level, the pre-initialisation notice and
the cuInit error of a machine without a CUDA driver are dropped; everything else is written
back to stderr. For CLIs only: library modules never call it, so users' scripts keep
TensorFlow's own logging.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}
_GLOG = re.compile(r"^([IWEF])\d{4} ")


def filter_startup_log(text, min_level):
    """The lines of ``text`` (TensorFlow's captured start-up stderr) worth showing."""
    no_driver = "Could not find cuda drivers" in text
    out, dropping = [], False
    for line in text.splitlines(keepends=True):
        m = _GLOG.match(line)
        if m:
            dropping = (_SEVERITY[m.group(1)] < min_level
                        or (no_driver and "failed call to cuInit" in line))
        elif line.startswith("WARNING: All log messages before absl::InitializeLog()"):
            dropping = True
            continue
        elif not line.startswith((" ", "\t", "To enable the following instructions")):
            dropping = False   # a new, non-glog line (e.g. a Python warning)
        if not dropping:
            out.append(line)
    return "".join(out)


def _import_quietly(min_level):
    """Import TensorFlow and list its devices (cuInit) with fd 2 captured and filtered."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            sys.stderr.write(filter_startup_log(capture.read().decode("utf-8", "replace"), min_level))
            sys.stderr.flush()


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """On the first import of ``tensorflow``: import it quietly, then hand that module over."""

    def __init__(self, min_level):
        self.min_level = min_level

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        _import_quietly(self.min_level)
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        return sys.modules["tensorflow"]

    def exec_module(self, module):
        pass


def quiet_tensorflow_startup(default_level="2"):
    """Call at the start of a CLI's main(), before anything imports TensorFlow."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", default_level)
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietTensorFlowFinder) for f in sys.meta_path):
        return
    try:
        level = int(os.environ["TF_CPP_MIN_LOG_LEVEL"])
    except ValueError:
        level = int(default_level)
    sys.meta_path.insert(0, _QuietTensorFlowFinder(level))
