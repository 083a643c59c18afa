"""Resume after a hard kill: SIGKILL a training process right after its epoch-1 checkpoint,
then a new process resumes from ``find_last()`` and continues at epoch 2 in the same run folder.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

RUNNER = textwrap.dedent("""
    import json, sys, time
    sys.path.insert(0, {repo!r})
    import keras
    from mrcnn.model import MaskRCNN
    from tests.train_helpers import shapes, train_config

    mode, model_dir = sys.argv[1], sys.argv[2]

    class PauseAfterFirstEpoch(keras.callbacks.Callback):
        # Holds the process after the epoch-1 checkpoint so the test can kill it there.
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                print("EPOCH1_SAVED", flush=True)
                time.sleep(120)

    config = train_config(STEPS_PER_EPOCH=2)
    keras.utils.set_random_seed(1)
    model = MaskRCNN("training", config, model_dir)
    dataset = shapes(8, seed=3)
    callbacks = []
    if mode == "fresh":
        callbacks = [PauseAfterFirstEpoch()]
    else:
        path = model.find_last()
        model.load_weights(path, by_name=True)
        print("RESUMED", json.dumps({{"path": path, "epoch": model.epoch, "log_dir": model.log_dir}}), flush=True)
    history = model.train(dataset, None, 0.01, 3, "all", custom_callbacks=callbacks)
    print("HISTORY", json.dumps([{{"epoch": r["epoch"], "loss": r["loss"], "checkpoint": r["checkpoint"]}}
                                 for r in history]), flush=True)
""")


def _line(output, tag):
    for line in output.splitlines():
        if line.startswith(tag + " "):
            return json.loads(line[len(tag) + 1:])
    raise AssertionError(f"no {tag} line in output:\n{output}")


@pytest.mark.slow
def test_killed_run_resumes_at_epoch_2_in_the_same_folder(tmp_path):
    script = tmp_path / "runner.py"
    script.write_text(RUNNER.format(repo=REPO))
    model_dir = tmp_path / "logs"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, str(script), "fresh", str(model_dir)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        deadline = time.time() + 600
        first = None
        while time.time() < deadline and proc.poll() is None:
            runs = list(model_dir.glob("shapes*/mask_rcnn_shapes_0001.h5")) if model_dir.exists() else []
            if runs:
                first = runs[0]
                break
            time.sleep(0.05)
        assert first is not None, f"no epoch-1 checkpoint (exit code {proc.poll()})"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    run_dir = first.parent
    assert sorted(p.name for p in run_dir.glob("*.h5")) == ["mask_rcnn_shapes_0001.h5"]
    # Checkpoints are written to a temp file and renamed: a kill mid-write leaves only a
    # *.tmp file, which find_last must never pick. Plant one that looks newer than epoch 1.
    (run_dir / "mask_rcnn_shapes_0002.h5.tmp").write_bytes(b"\x89HDF\r\n partial")
    stat1 = first.stat()
    content1 = first.read_bytes()

    out = subprocess.run([sys.executable, str(script), "resume", str(model_dir)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    resumed = _line(out.stdout, "RESUMED")
    assert resumed["path"] == str(first) and resumed["epoch"] == 1
    assert resumed["log_dir"] == str(run_dir)
    history = _line(out.stdout, "HISTORY")
    assert [r["epoch"] for r in history] == [2, 3]
    assert [os.path.basename(r["checkpoint"]) for r in history] == [
        "mask_rcnn_shapes_0002.h5", "mask_rcnn_shapes_0003.h5"]
    assert all(os.path.dirname(r["checkpoint"]) == str(run_dir) for r in history)
    assert all(r["loss"] == r["loss"] and r["loss"] < 100 for r in history)
    assert sorted(p.name for p in run_dir.glob("*.h5")) == [
        "mask_rcnn_shapes_0001.h5", "mask_rcnn_shapes_0002.h5", "mask_rcnn_shapes_0003.h5"]
    # Epoch 1 was not rewritten, and no other run folder was started.
    assert first.stat().st_mtime_ns == stat1.st_mtime_ns and first.read_bytes() == content1
    assert [p.name for p in model_dir.iterdir()] == [run_dir.name]
