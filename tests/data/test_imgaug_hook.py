"""The ``mrcnn_keras3_imgaug.pth`` start-up hook: ``import imgaug`` works on NumPy 2 with no
change to user code, before or after ``import mrcnn``, and NumPy is left alone otherwise.

Each case runs a fresh interpreter that processes the .pth the way site-packages does
(``site.addsitedir``). The wheel/editable install tests build the project with pip.
"""
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PTH = "mrcnn_keras3_imgaug.pth"


def run_with_hook(tmp_path, code):
    """Run ``code`` in a new interpreter whose site dir holds our .pth; returns stdout."""
    site_dir = tmp_path / "site"
    site_dir.mkdir(exist_ok=True)
    shutil.copy(os.path.join(ROOT, PTH), site_dir / PTH)
    prelude = f"import site; site.addsitedir({str(site_dir)!r})\n"
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONWARNINGS="ignore")
    out = subprocess.run([sys.executable, "-c", prelude + code], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_pth_is_one_import_line():
    with open(os.path.join(ROOT, PTH)) as f:
        lines = [l for l in f.read().splitlines() if l.strip()]
    assert lines == ["import mrcnn_imgaug_hook"]


def test_imgaug_first_then_mrcnn(tmp_path):
    out = run_with_hook(tmp_path, (
        "import imgaug\nimport imgaug.augmenters as iaa\n"
        "from mrcnn import utils, visualize\nimport numpy as np\n"
        "print(imgaug.__version__, np.__version__.split('.')[0], np.float64 in np.sctypes['float'])"))
    version, numpy_major, ok = out.split()
    assert version == "0.4.0" and ok == "True"
    assert int(numpy_major) >= 2 or ok == "True"


def test_imgaug_after_mrcnn(tmp_path):
    out = run_with_hook(tmp_path, (
        "import mrcnn.utils, numpy as np\nimport imgaug.augmenters as iaa\n"
        "print(type(iaa.Fliplr(0.5)).__name__, 'sctypes' in vars(np))"))
    assert out.split() == ["Fliplr", "True"]


def test_startup_is_cheap_and_numpy_untouched_without_imgaug(tmp_path):
    out = run_with_hook(tmp_path, (
        "import sys\nprint('numpy' in sys.modules, 'mrcnn' in sys.modules,\n"
        "      any(getattr(f, '__name__', '') == 'ImgaugNumpyShimFinder' for f in sys.meta_path))\n"
        "import numpy as np\nprint('sctypes' in vars(np), 'complex' in vars(np))"))
    assert out.split() == ["False", "False", "True", "False", "False"]


def test_finder_removes_itself_after_first_imgaug_import(tmp_path):
    out = run_with_hook(tmp_path, (
        "import sys, imgaug\n"
        "print(any(getattr(f, '__name__', '') == 'ImgaugNumpyShimFinder' for f in sys.meta_path))"))
    assert out.split() == ["False"]


def _pip(args, timeout=300):
    """Run pip; skip the test when pip cannot reach the package index (build isolation
    downloads setuptools)."""
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"] + args
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode and any(s in out.stderr for s in ("No matching distribution", "NewConnectionError",
                                                        "Could not find a version", "Network is unreachable")):
        pytest.skip("pip cannot reach the package index: " + out.stderr.strip().splitlines()[-1])
    assert out.returncode == 0, out.stderr[-3000:]


@pytest.mark.slow
def test_wheel_and_editable_installs_put_the_pth_in_site_packages(tmp_path):
    """The wheel's root (= site-packages) holds the .pth and the hook module; an editable
    install writes the .pth into site-packages too."""
    src = tmp_path / "src"
    top = {".venv", ".git", "build", "logs", "data", ".cache"}  # only at the top: mrcnn/data is code

    def ignore(folder, names):
        here = os.path.samefile(folder, ROOT)
        return [n for n in names if (here and n in top) or n == "__pycache__" or n.endswith(".egg-info")]

    shutil.copytree(ROOT, src, ignore=ignore)
    _pip(["wheel", "--no-deps", "-w", str(tmp_path / "whl"), str(src)])
    (wheel,) = (tmp_path / "whl").iterdir()
    names = zipfile.ZipFile(wheel).namelist()
    assert PTH in names and "mrcnn_imgaug_hook.py" in names
    target = tmp_path / "editable_site"
    _pip(["install", "--no-deps", "--target", str(target), "-e", str(src)])
    assert (target / PTH).read_text().strip() == "import mrcnn_imgaug_hook"
