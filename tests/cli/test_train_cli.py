"""train.py end to end against a local Open Images mirror (issue 7: "Must show" and "Bad input").

One small mirror (Cat only) is built and served per module; every train.py run is a real
subprocess with a tiny config (64 px images, 3 steps per epoch), so these tests exercise the
download, the data checks, training, checkpoints, resume after Ctrl-C and the final evaluation.
"""
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = {"IMAGE_MIN_DIM": "64", "IMAGE_MAX_DIM": "64", "STEPS_PER_EPOCH": "3", "VALIDATION_STEPS": "2",
        "POST_NMS_ROIS_TRAINING": "100", "POST_NMS_ROIS_INFERENCE": "50", "TRAIN_ROIS_PER_IMAGE": "32",
        "RPN_ANCHOR_SCALES": "[8, 16, 32, 64, 128]"}
ENV = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A served Cat-only mirror (4 images per split), a tiny config and a shared data folder."""
    from download.mirror import build_mirror, serve

    root = tmp_path_factory.mktemp("train_cli")
    build_mirror(str(root / "mirror"), images_per_split=4, image_classes=["Cat"])
    server, base_url = serve(str(root / "mirror"))
    src = open(os.path.join(REPO, "configs", "demo.toml"), encoding="utf8").read()
    for key, value in TINY.items():
        src, n = re.subn(rf"(?m)^{key}\s*=.*$", f"{key} = {value}", src)
        assert n == 1, key
    config = root / "tiny.toml"
    config.write_text(src)
    from download import download_class  # the shared data folder most tests use with --no-download
    download_class("Cat", out=str(root / "data"), splits=("train", "validation", "test"),
                   base_url=base_url, images_url=server.images_url, progress=False)
    try:
        yield {"root": root, "config": str(config), "data": str(root / "data"),
               "net": ["--base-url", base_url, "--images-url", server.images_url]}
    finally:
        server.stop()


def train_cmd(env, logs, *args, data=None, config=True):
    cmd = [sys.executable, os.path.join(REPO, "train.py"), "--quiet", "--logs", str(logs),
           "--data", data or env["data"], *env["net"]]
    if config:
        cmd += ["--config", env["config"]]
    return cmd + list(args)


def run_train(env, logs, *args, timeout=600, **kw):
    return subprocess.run(train_cmd(env, logs, *args, **kw), cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def only_run(logs):
    runs = [os.path.dirname(p) for p in glob.glob(os.path.join(str(logs), "*", "state.json"))]
    assert len(runs) == 1, runs
    return runs[0]


def state_of(run_dir):
    with open(os.path.join(run_dir, "state.json"), encoding="utf8") as f:
        return json.load(f)


def results(run_dir):
    from mrcnn.io import runs
    return runs.read_results(run_dir)


def assert_image(path):
    from PIL import Image
    with Image.open(path) as im:
        im.load()
        assert im.width > 0 and im.height > 0, path


def tb_scalars(log_dir, tag):
    """[(step, value)] of a TF2 summary scalar (stored as a tensor) in the event files of ``log_dir``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    acc = EventAccumulator(log_dir, size_guidance={"tensors": 0}).Reload()
    assert tag in acc.Tags()["tensors"], (log_dir, acc.Tags()["tensors"])
    return [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]


def explain(proc):
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"


# ---------------------------------------------------------------------------- must show
def test_download_train_one_epoch_and_evaluate(env, tmp_path):
    logs = tmp_path / "logs"
    data = tmp_path / "data"  # empty: train.py downloads the three splits from the mirror
    proc = run_train(env, logs, "--class", "Cat", "--epochs", "1", "--weights", "none", data=str(data))
    assert proc.returncode == 0, explain(proc)
    assert len(glob.glob(os.path.join(str(data), "**", "*.jpg"), recursive=True)) == 12
    run = only_run(logs)

    state = state_of(run)
    assert state["status"] == "finished" and state["completed_epoch"] == 1
    assert state["classes"] == ["Cat"] and state["class_names"] == ["BG", "Cat"]
    rows = results(run)
    assert [int(r["epoch"]) for r in rows] == [1]
    loss, val_loss = float(rows[0]["loss"]), float(rows[0]["val_loss"])
    assert np.isfinite(loss) and np.isfinite(val_loss) and loss > 0 and val_loss > 0
    assert os.path.isfile(os.path.join(run, "mask_rcnn_cat_0001.h5"))
    assert os.path.isfile(os.path.join(run, "best.h5")) and os.path.isfile(os.path.join(run, "last.h5"))

    pngs = [os.path.join(run, "results.png")]
    pngs += glob.glob(os.path.join(run, "val_images", "**", "*.png"), recursive=True)
    pngs += glob.glob(os.path.join(run, "eval_test", "**", "*.png"), recursive=True)
    assert any("val_images" in p for p in pngs) and any("eval_test" in p for p in pngs), pngs
    for p in pngs:
        assert_image(p)

    with open(os.path.join(run, "eval_test", "metrics.json"), encoding="utf8") as f:
        metrics = json.load(f)
    for kind in ("segm", "bbox"):
        for key in ("AP", "AP50", "AP75", "APs", "APm", "APl"):
            assert isinstance(metrics[kind][key], (int, float)), (kind, key)
    assert set(metrics["per_class"]) == {"Cat"}
    assert isinstance(metrics["matterport_mAP50"], (int, float))
    assert metrics["num_images"] == 4  # the mirror's 4 test images of Cat
    assert metrics["split"] == "test"

    # TensorBoard holds the same losses as results.csv, at epoch 1.
    (step, tb_loss), = tb_scalars(os.path.join(run, "train"), "loss/total")
    assert step == 1 and tb_loss == pytest.approx(loss, rel=1e-4)
    (step, tb_val), = tb_scalars(os.path.join(run, "validation"), "loss/total")
    assert step == 1 and tb_val == pytest.approx(val_loss, rel=1e-4)
    assert "Summary" in proc.stdout and "matterport" in proc.stdout
    # --quiet and no TTY: no bars (no carriage returns), no per-epoch lines; LR and time recorded.
    assert "\r" not in proc.stdout + proc.stderr and "epoch 1/1" not in proc.stdout
    assert float(rows[0]["lr"]) > 0 and float(rows[0]["time"]) > 0


@pytest.fixture(scope="module")
def five_class_weights(env):
    """An .h5 saved from the tiny model with NUM_CLASSES=5 (the Cat run has 2)."""
    code = (
        "import sys\n"
        "from mrcnn.config import Config\n"
        "from mrcnn.model import MaskRCNN\n"
        "config = Config.from_toml(sys.argv[1])\n"
        "config.update({'NAME': 'five', 'NUM_CLASSES': 5})\n"
        "model = MaskRCNN(mode='training', config=config, model_dir=sys.argv[2])\n"
        "model.save_weights(sys.argv[3])\n")
    path = env["root"] / "five_classes.h5"
    proc = subprocess.run([sys.executable, "-c", code, env["config"], str(env["root"] / "five_logs"), str(path)],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, explain(proc)
    return str(path)


def test_head_swap_then_ctrl_c_then_resume(env, tmp_path, five_class_weights):
    """--weights from a 5-class model: heads swapped; SIGINT after epoch 1 -> exit 130, "interrupted";
    --resume finishes epoch 2 in the same run folder with continuous results."""
    from mrcnn_keras3.weights import file_num_classes

    assert file_num_classes(five_class_weights) == 5  # the file really has 5-class heads

    logs = tmp_path / "logs"
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen(train_cmd(env, logs, "--class", "Cat", "--epochs", "2",
                                          "--weights", five_class_weights),
                                cwd=REPO, env=ENV, stdout=fo, stderr=fe, text=True)
        try:
            # Interrupt once epoch 1 is fully recorded (checkpoint + state), i.e. during epoch 2.
            deadline, run = time.time() + 600, None
            while time.time() < deadline and proc.poll() is None:
                found = glob.glob(os.path.join(str(logs), "*", "mask_rcnn_cat_0001.h5"))
                if found:
                    run = os.path.dirname(found[0])
                    try:
                        if state_of(run)["completed_epoch"] >= 1:
                            break
                    except (OSError, ValueError, KeyError):
                        pass
                time.sleep(0.05)
            assert run is not None and proc.poll() is None, f"no epoch-1 checkpoint (exit {proc.poll()})"
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    stdout, stderr = out.read_text(), err.read_text()
    assert "class-specific heads" in stdout and "5 classes" in stdout, stdout
    assert proc.returncode == 130, f"exit {proc.returncode}\n{stdout[-2000:]}\n{stderr[-2000:]}"
    assert "--resume" in stderr
    state = state_of(run)
    assert state["status"] == "interrupted" and state["completed_epoch"] == 1
    assert os.path.isfile(os.path.join(run, "interrupted.h5"))
    assert not os.path.exists(os.path.join(run, "mask_rcnn_cat_0002.h5"))
    assert [int(r["epoch"]) for r in results(run)] == [1]
    loss1 = results(run)[0]["loss"]

    proc = run_train(env, logs, "--resume", config=False)
    assert proc.returncode == 0, explain(proc)
    assert only_run(logs) == run  # the same run folder, no new one
    assert f"Resuming {run} at epoch 1 of 2" in proc.stdout
    state = state_of(run)
    assert state["status"] == "finished" and state["completed_epoch"] == 2 and state["epochs"] == 2
    rows = results(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert rows[0]["loss"] == loss1  # epoch 1's row kept as it was
    assert all(np.isfinite(float(r["loss"])) and np.isfinite(float(r["val_loss"])) for r in rows)
    assert [os.path.basename(p) for p in sorted(glob.glob(os.path.join(run, "mask_rcnn_*.h5")))] == \
        ["mask_rcnn_cat_0001.h5", "mask_rcnn_cat_0002.h5"]
    steps = [s for s, _ in tb_scalars(os.path.join(run, "train"), "loss/total")]
    assert sorted(set(steps)) == [1, 2]
    assert os.path.isfile(os.path.join(run, "eval_test", "metrics.json"))


# ---------------------------------------------------------------------------- bad input
def assert_usage_error(proc, *needles):
    assert proc.returncode == 2, explain(proc)
    assert "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, f"{needle!r} not in stderr:\n{proc.stderr[-3000:]}"


def test_unknown_class_suggests_the_close_name(env, tmp_path):
    proc = run_train(env, tmp_path / "logs", "--class", "Kat", "--epochs", "1", "--weights", "none")
    assert_usage_error(proc, "did you mean", "Cat")
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize("epochs", ["0", "-1", "two"])
def test_epochs_must_be_a_positive_integer(env, tmp_path, epochs):
    proc = run_train(env, tmp_path / "logs", "--class", "Cat", "--epochs", epochs, "--weights", "none")
    assert_usage_error(proc, "usage:", "--epochs")


def test_missing_weights_file(env, tmp_path):
    data = tmp_path / "data"
    proc = run_train(env, tmp_path / "logs", "--class", "Cat", "--epochs", "1",
                     "--weights", str(tmp_path / "nonexistent.h5"), data=str(data))
    assert_usage_error(proc, "not found", "nonexistent.h5")
    assert not data.exists() and not (tmp_path / "logs").exists()  # refused before any download


def test_weights_file_that_is_not_hdf5(env, tmp_path):
    bogus = tmp_path / "weights.h5"
    bogus.write_text("this is not an HDF5 file\n")
    data = tmp_path / "data"
    proc = run_train(env, tmp_path / "logs", "--class", "Cat", "--epochs", "1", "--weights", str(bogus),
                     data=str(data))
    assert_usage_error(proc, "not an HDF5", str(bogus))
    assert not data.exists() and not (tmp_path / "logs").exists()  # refused before any download


def test_resume_with_no_previous_run(env, tmp_path):
    (tmp_path / "logs").mkdir()
    proc = run_train(env, tmp_path / "logs", "--resume")
    assert_usage_error(proc, "No previous run", str(tmp_path / "logs"))


def test_unknown_config_key_lists_the_close_match(env, tmp_path):
    proc = run_train(env, tmp_path / "logs", "--class", "Cat", "--epochs", "1", "--weights", "none",
                     "--no-download", "--set", "IMAGE_MAX_DIMS=64")
    assert_usage_error(proc, "IMAGE_MAX_DIMS")
    # The close match is listed by its own name (not only as a prefix of the misspelt key).
    assert re.search(r"IMAGE_MAX_DIM(?!S)", proc.stderr), proc.stderr


def test_empty_data_folder_names_the_split(env, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_train(env, tmp_path / "logs", "--class", "Cat", "--epochs", "1", "--weights", "none",
                     "--no-download", data=str(empty))
    assert_usage_error(proc, "train split", "no usable images", str(empty))


def test_limit_zero_names_the_split(env, tmp_path):
    data = tmp_path / "data"
    proc = run_train(env, tmp_path / "logs", "--class", "Cat", "--epochs", "1", "--weights", "none",
                     "--limit", "0", data=str(data))
    assert_usage_error(proc, "split", "no usable images", "--limit is 0")
