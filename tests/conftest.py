"""Suite-wide pytest hooks: the oneDNN setting in the header, and the ``no_tf`` marker.

``make test`` runs the ``no_tf`` modules once, with TensorFlow imports forbidden
(MRCNN_FORBID_TF=1, so a module that starts using TensorFlow fails there and must leave the
list), and every other test twice: TF_ENABLE_ONEDNN_OPTS=0 and =1, because oneDNN changes
kernels and summation orders (and rejected empty batches, issue 14).
"""
import importlib.abc
import os
import sys

import pytest

# Test modules that never run TensorFlow: NumPy code, downloads, dataset tools, configs.
# Their subprocesses (python -m download / dataset) never import TensorFlow either.
NO_TF_MODULES = {
    "test_skipped", "test_run_files", "test_results_plot", "test_coco_weights", "test_config_checks",
    "test_image",
    "test_anchors", "test_augment", "test_config", "test_config_defaults", "test_dataset_check",
    "test_dataset_convert", "test_dataset_fixtures", "test_dataset_formats", "test_dataset_openimages",
    "test_dataset_voc", "test_download_csv", "test_interrupt", "test_download_e2e", "test_download_faults",
    "test_download_mirror", "test_download_resume", "test_download_zip", "test_imgaug_compat",
    "test_evaluation", "test_inputs", "test_metrics", "test_rpn_targets", "test_shapes", "test_utils",
    "test_visualize", "test_rle", "test_schedule", "test_toml_io", "test_eval_loop",
    "test_fsio",
}
_FORBIDDEN = ("tensorflow", "keras", "tf_keras")


def no_tf_paths():
    """Paths (relative to the checkout) of the NO_TF_MODULES files, wherever they sit under
    tests/; a name without a file is an error, so a renamed test cannot drop out silently."""
    here = os.path.dirname(os.path.abspath(__file__))
    found = {}
    for base, _, names in os.walk(here):
        for name in names:
            if name[:-3] in NO_TF_MODULES and name.endswith(".py"):
                found[name[:-3]] = os.path.relpath(os.path.join(base, name), os.path.dirname(here))
    missing = sorted(NO_TF_MODULES - set(found))
    if missing:
        raise SystemExit(f"tests/conftest.py NO_TF_MODULES names missing test files: {missing}")
    return [found[m] for m in sorted(found)]


class _ForbidTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _FORBIDDEN:
            raise ImportError(f"{name} imported by a test marked no_tf (tests/conftest.py NO_TF_MODULES): "
                              "remove the module from the list so it runs under both oneDNN settings")
        return None


if os.environ.get("MRCNN_FORBID_TF") == "1":
    sys.meta_path.insert(0, _ForbidTensorFlow())


def pytest_report_header(config):
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset (TensorFlow's default for this CPU)")
    return f"TF_ENABLE_ONEDNN_OPTS={onednn}  MRCNN_FORBID_TF={os.environ.get('MRCNN_FORBID_TF', '0')}"


def pytest_configure(config):
    config.addinivalue_line("markers", "no_tf: never runs TensorFlow (tests/conftest.py NO_TF_MODULES)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module is not None and item.module.__name__.rsplit(".", 1)[-1] in NO_TF_MODULES:
            item.add_marker(pytest.mark.no_tf)
