"""Quiet start-up of the CLIs on CPU machines: no cuInit error, no doubled TensorFlow banners."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mrcnn.io.cli_logging import filter_startup_log

ROOT = Path(__file__).resolve().parents[2]
NOISE = ("failed call to cuInit", "All log messages before absl::InitializeLog",
         "Could not find cuda drivers", "oneDNN custom operations are on", "cpu_feature_guard")

# What TensorFlow 2.21 printed on import + list_physical_devices() on a CPU-only machine.
SAMPLE = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1.1   22709 port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results
I0000 00:00:1.2   22709 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
I0000 00:00:1.3   22709 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU instructions
To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow.
/x/site-packages/foo.py:1: UserWarning: a Python warning
  warnings.warn("a Python warning")
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1.4   22709 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
W0000 00:00:1.5   22709 something.cc:1] a TensorFlow warning
E0000 00:00:1.6   22709 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit
E0000 00:00:1.7   22709 other.cc:9] a real error
"""


def test_filter_keeps_what_the_level_asks_for():
    out = filter_startup_log(SAMPLE, 2)
    assert out.splitlines() == ["/x/site-packages/foo.py:1: UserWarning: a Python warning",
                                '  warnings.warn("a Python warning")',
                                "E0000 00:00:1.7   22709 other.cc:9] a real error"]
    assert "a TensorFlow warning" in filter_startup_log(SAMPLE, 1)
    everything = filter_startup_log(SAMPLE, 0)
    assert everything.count("Could not find cuda drivers") == 2 and "InitializeLog" not in everything
    # With a CUDA driver present, a cuInit failure is a real problem and stays visible.
    with_driver = SAMPLE.replace("Could not find cuda drivers", "found drivers")
    assert "failed call to cuInit" in filter_startup_log(with_driver, 2)


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "MRCNN_FORBID_TF")}
    env["PYTHONPATH"] = str(ROOT)
    return env


@pytest.mark.parametrize("entry", ["train.py", "evaluate.py", "mrcnn_keras3.export_cli"])
def test_every_cli_installs_the_quiet_import_before_tensorflow(entry):
    """Each CLI's main() sets it up first thing (checked after --help, without importing TF)."""
    run = (f"runpy.run_module({entry!r}, run_name='__main__')" if "/" not in entry and not entry.endswith(".py")
           else f"runpy.run_path({str(ROOT / entry)!r}, run_name='__main__')")
    code = ("import runpy, sys\nsys.argv = ['cli', '--help']\ntry:\n    " + run + "\nexcept SystemExit:\n    pass\n"
            "print('HOOKED', any(type(f).__name__ == '_QuietTensorFlowFinder' for f in sys.meta_path),"
            " 'tensorflow' in sys.modules, __import__('os').environ.get('TF_CPP_MIN_LOG_LEVEL'))")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert "HOOKED True False 2" in p.stdout, (p.stdout[-500:], p.stderr[-2000:])


def test_tensorflow_starts_quietly_after_the_hook():
    """The first TensorFlow import, from inside mrcnn.model, prints none of the start-up noise."""
    code = ("import sys\nfrom mrcnn.io.cli_logging import quiet_tensorflow_startup\nquiet_tensorflow_startup()\n"
            "import mrcnn.model\nimport tensorflow as tf\nprint(int(tf.constant(2) + 1))\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0 and p.stdout.strip() == "3", p.stderr
    assert not [n for n in NOISE if n in p.stderr], p.stderr
