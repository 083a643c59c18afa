"""Installable (issue 18, build 3): the wheel installs console scripts that work from any
folder with the configs shipped, and no top-level module that shadows another distribution.

The wheel is built offline with this interpreter's setuptools (``make venv`` installs
setuptools>=77 with the test extras) and installed into a fresh venv that borrows this
environment's heavy dependencies (TensorFlow...) through a .pth line, with ``--no-deps``.
"""
import glob
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ("mrcnn-train", "mrcnn-evaluate", "mrcnn-download", "mrcnn-dataset", "mrcnn-export")
SKIP = {".git", ".venv", ".demo", "data", "logs", "build", "tests", "bench", "__pycache__"}


def _setuptools_ok():
    try:
        import setuptools
    except ImportError:
        return False
    return int(setuptools.__version__.split(".")[0]) >= 77


pytestmark = pytest.mark.skipif(not _setuptools_ok(), reason="needs setuptools>=77 (make venv installs it)")


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    # SKIP only at the top (mrcnn/data is code); caches and egg-info anywhere.
    shutil.copytree(REPO, src, ignore=lambda d, names: [
        n for n in names if (n in SKIP and os.path.samefile(d, REPO)) or n == "__pycache__" or n.endswith(".egg-info")])
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                    "-w", str(root / "dist"), "-q"], check=True, capture_output=True, timeout=300)
    wheel, = glob.glob(str(root / "dist" / "*.whl"))
    env_dir = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    py = str(env_dir / "bin" / "python")
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # TensorFlow & co.: this environment's site folders (make's venv sits inside the checkout, at
    # .venv), after the wheel's. A .pth line adds a folder without running the .pth files in it,
    # so the editable install's finder, which would import the checkout, stays off.
    outer = [p for p in sys.path if os.path.basename(p.rstrip(os.sep)) in ("site-packages", "dist-packages")
             and os.path.isdir(p)]
    with open(os.path.join(site, "_heavy_deps.pth"), "w") as f:
        f.write("\n".join(outer) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "-q", wheel],
                   check=True, capture_output=True, timeout=300)
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    return {"root": root, "wheel": wheel, "bin": str(env_dir / "bin"), "py": py, "cwd": str(elsewhere)}


def run(venv, *cmd, timeout=120):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing from the checkout
    env.update(TF_CPP_MIN_LOG_LEVEL="3", PATH=venv["bin"] + os.pathsep + env.get("PATH", ""))
    return subprocess.run(list(cmd), cwd=venv["cwd"], env=env, capture_output=True, text=True, timeout=timeout)


def test_wheel_installs_only_its_own_namespaces(venv):
    with zipfile.ZipFile(venv["wheel"]) as zf:
        names = zf.namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    # Two packages, plus the imgaug start-up hook: one module and its .pth (issue 16).
    assert tops == {"mrcnn", "mrcnn_keras3", "mrcnn_imgaug_hook.py", "mrcnn_keras3_imgaug.pth"}, tops
    for shipped in ("default.toml", "cat.toml", "cpu-small.toml", "demo.toml", "coco.toml"):
        assert f"mrcnn_keras3/configs/{shipped}" in names
    assert "mrcnn_keras3/download/mirror/server.py" in names and "mrcnn_keras3/dataset/cli.py" in names


def test_every_script_answers_help_from_another_folder(venv):
    for script in SCRIPTS:
        proc = run(venv, os.path.join(venv["bin"], script), "--help")
        assert proc.returncode == 0, (script, proc.stderr)
        assert "usage:" in proc.stdout, script
    proc = run(venv, venv["py"], "-c", "import mrcnn_keras3, mrcnn.io.fsio; print(mrcnn_keras3.IN_CHECKOUT, "
                                       "mrcnn_keras3.config_dir())")
    in_checkout, configs = proc.stdout.split()
    assert in_checkout == "False" and configs.startswith(str(venv["root"] / "venv")), proc.stdout


@pytest.mark.slow
def test_tiny_offline_train_and_evaluate_from_another_folder(venv):
    from download.mirror import build_mirror
    from download.mirror.testing import running

    build_mirror(str(venv["root"] / "mirror"), images_per_split=3, image_classes=["Cat"])
    tiny = ["IMAGE_MIN_DIM=64", "IMAGE_MAX_DIM=64", "STEPS_PER_EPOCH=2", "VALIDATION_STEPS=1",
            "POST_NMS_ROIS_TRAINING=100", "POST_NMS_ROIS_INFERENCE=50", "TRAIN_ROIS_PER_IMAGE=32"]
    with running(str(venv["root"] / "mirror")) as srv:
        proc = run(venv, os.path.join(venv["bin"], "mrcnn-train"), "--class", "Cat", "--epochs", "1",
                   "--weights", "none", "--config", "demo.toml", *[a for kv in tiny for a in ("--set", kv)],
                   "--base-url", srv.base_url, "--images-url", srv.images_url, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"epoch 1/1 .*segm_AP", proc.stdout), proc.stdout
    assert os.path.isdir(os.path.join(venv["cwd"], "data", "cat")) and os.path.isdir(os.path.join(venv["cwd"], "logs"))
    proc = run(venv, os.path.join(venv["bin"], "mrcnn-evaluate"), "--split", "validation", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "segm" in proc.stdout and glob.glob(os.path.join(venv["cwd"], "logs", "*", "eval_validation", "metrics.json"))
