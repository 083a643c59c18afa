"""Attacks on run folders and resume (mrcnn.io.runs, train.py --resume, mrcnn.io.weights_io)."""
from __future__ import annotations

import os
import subprocess
import sys
import types

from tests.attack import CLEAR, SURVIVED, attack, expect_error
from tests.attack.builders import tiny_filesystem, truncate, write_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@attack(2, "two trainings claim a run folder in the same minute")
def same_minute(tmp):
    base = os.path.join(tmp, "logs", "cat20260101T1200")
    code = ("import sys, time; from mrcnn.io import runs\n"
            "time.sleep(max(0, float(sys.argv[2]) - time.time()))\n"  # start together
            "print(runs.claim_run_dir(sys.argv[1]))")
    import time
    start = time.time() + 1.5
    env = dict(os.environ, PYTHONPATH=ROOT)
    procs = [subprocess.Popen([sys.executable, "-c", code, base, str(start)], stdout=subprocess.PIPE,
                              env=env, text=True) for _ in range(4)]
    dirs = [p.communicate(timeout=20)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs), dirs
    assert len(set(dirs)) == 4, f"runs share a folder: {dirs}"
    assert sorted(dirs) == sorted([base] + [f"{base}-{k}" for k in (2, 3, 4)]), dirs
    return SURVIVED


@attack(2, "a suffixed run's checkpoint resumes into its own folder")
def suffixed_checkpoint(tmp):
    from mrcnn.model import MaskRCNN
    holder = types.SimpleNamespace(model_dir=os.path.join(tmp, "logs"), config=types.SimpleNamespace(NAME="cat"))
    ckpt = os.path.join(tmp, "logs", "cat20260101T1200-2", "mask_rcnn_cat_0003.h5")
    MaskRCNN.set_log_dir(holder, ckpt)
    assert holder.log_dir == os.path.dirname(ckpt), holder.log_dir
    assert holder.epoch == 3
    return SURVIVED


def _temps(folder):
    return [n for n in os.listdir(folder) if n.startswith(".") or n.endswith(".tmp")]


def _dense(units, inputs):
    import keras
    layer = keras.layers.Dense(units, name=f"dense_{units}")
    layer.build((None, inputs))
    return {layer.name: layer}


def _full_disk_checks(folder, monkeypatch_probe, tmp):
    """Write a 4 MB checkpoint and copy one into ``folder`` (~2 MiB free): both must fail clearly,
    leave no temp file and keep the previous files; with room again, both must succeed."""
    from mrcnn.io import fsio as fsutil
    from mrcnn.io import runs
    from mrcnn.io import weights_io
    small = _dense(2, 2)
    prev = os.path.join(folder, "mask_rcnn_cat_0001.h5")
    weights_io.save_weights(small, prev)
    before = open(prev, "rb").read()
    big = _dense(1024, 1024)
    src = os.path.join(tmp, "big.h5")
    weights_io.save_weights(big, src)
    errors = []
    with monkeypatch_probe():
        errors.append(_expect_full(lambda: weights_io.save_weights(big, os.path.join(folder, "mask_rcnn_cat_0002.h5")), folder))
        errors.append(_expect_full(lambda: weights_io.save_weights(big, prev), folder))
        errors.append(_expect_full(lambda: runs.atomic_copy(src, os.path.join(folder, "last.h5")), folder))
    assert open(prev, "rb").read() == before, "the previous checkpoint changed"
    assert sorted(os.listdir(folder)) == ["mask_rcnn_cat_0001.h5"], os.listdir(folder)
    assert weights_io.read_weights(prev)["dense_2"][0][1].shape == (2, 2)
    return errors, fsutil


def _expect_full(fn, folder):
    from download.fsutil import DiskFullError
    try:
        fn()
    except DiskFullError as e:
        msg = str(e)
        assert os.path.abspath(folder) in msg and "bytes" in msg and "free" in msg.lower(), msg
        return msg
    raise AssertionError("no DiskFullError on a full disk")


@attack(3, "full disk during a checkpoint and the last.h5 copy", timeout=60)
def full_disk(tmp):
    import contextlib
    from mrcnn.io import fsio as fsutil
    with tiny_filesystem(3072) as fs:
        if fs is None:  # not root: a free-space probe that reports 2 MB
            folder = os.path.join(tmp, "run")
            os.makedirs(folder)

            @contextlib.contextmanager
            def probe():
                real = fsutil.free_bytes
                fsutil.free_bytes = lambda d: 2_000_000 if os.path.abspath(d) == folder else real(d)
                try:
                    yield
                finally:
                    fsutil.free_bytes = real
            _full_disk_checks(folder, probe, tmp)
            return CLEAR
        folder = os.path.join(fs, "run")
        os.makedirs(folder)
        _full_disk_checks(folder, contextlib.nullcontext, tmp)

        # The probe says there is room (another process freed it, then took it back): HDF5's
        # own write fails on the real full disk, and that too is a clear error, no temp left.
        @contextlib.contextmanager
        def lying_probe():
            real = fsutil.free_bytes
            fsutil.free_bytes = lambda d: 1 << 40
            try:
                yield
            finally:
                fsutil.free_bytes = real
        _full_disk_checks(folder, lying_probe, tmp)
    return CLEAR


@attack(13, "resume after a power loss truncated the newest checkpoint")
def truncated_checkpoint(tmp):
    from mrcnn.io import runs
    from mrcnn.io import weights_io
    run = os.path.join(tmp, "cat20260101T1200")
    os.makedirs(run)
    for e in (1, 2, 3):
        write_checkpoint(os.path.join(run, f"mask_rcnn_cat_{e:04d}.h5"), seed=e)
    truncate(os.path.join(run, "mask_rcnn_cat_0003.h5"), 0.6)
    path, skipped = runs.newest_complete_checkpoint(run)
    assert path.endswith("mask_rcnn_cat_0002.h5"), path
    assert [os.path.basename(p) for p, _ in skipped] == ["mask_rcnn_cat_0003.h5"]
    assert "mask_rcnn_cat_0003.h5" in skipped[0][1] and "cut short" in skipped[0][1]
    try:
        weights_io.read_weights(os.path.join(run, "mask_rcnn_cat_0003.h5"))
    except weights_io.WeightsError:
        return SURVIVED
    raise AssertionError("a truncated checkpoint read without error")


def _resume_error(tmp, state_text):
    """train.py --resume on a run whose state.json is ``state_text``: (rc, stderr)."""
    import contextlib
    import io
    import train
    logs = os.path.join(tmp, "logs")
    os.makedirs(os.path.join(logs, "cat20260101T1200"))
    with open(os.path.join(logs, "cat20260101T1200", "state.json"), "w") as f:
        f.write(state_text)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = train.main(["--resume", "--logs", logs])
    return rc, err.getvalue()


@attack(13, "resume with a truncated state.json")
def truncated_state(tmp):
    rc, err = _resume_error(tmp, '{"version": 1, "classes": ["Cat"], "da')
    assert rc == 2 and "state.json" in err and "Traceback" not in err, (rc, err)
    assert "start a new run" in err, err
    return CLEAR


@attack(13, "state.json and checkpoints are fsynced before the rename")
def fsync_before_rename(tmp):
    from mrcnn.io import runs
    synced, real = [], os.fsync
    os.fsync = lambda fd: (synced.append(fd), real(fd))[1]
    try:
        runs.write_state(tmp, {"classes": ["Cat"]})
    finally:
        os.fsync = real
    assert synced, "state.json was renamed into place without an fsync"
    assert runs.read_state(tmp) == {"classes": ["Cat"]}
    return SURVIVED


@attack(14, "state.json with \"classes\": 5")
def classes_not_a_list(tmp):
    rc, err = _resume_error(tmp, '{"version": 1, "classes": 5, "data": "data", "seed": 0, "limit": null,'
                                 ' "epochs": 2, "schedule": [], "completed_epoch": 1}')
    assert rc == 2 and "classes" in err and "state.json" in err and "Traceback" not in err, (rc, err)
    return CLEAR


@attack(14, ".h5 whose layer_names lists a missing group")
def missing_group(tmp):
    import h5py
    from mrcnn.io import weights_io
    path = write_checkpoint(os.path.join(tmp, "edited.h5"))
    with h5py.File(path, "a") as f:
        del f["dense"]
    return expect_error(weights_io.WeightsError, lambda: weights_io.read_weights(path),
                        path, "'dense'", "no group")


def _train_main(argv):
    import contextlib
    import io
    import train
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = train.main(argv)
    return rc, err.getvalue()


@attack(12, "--resume with --set and with a missing --config")
def resume_with_config_changes(tmp):
    from mrcnn.io import runs
    logs = os.path.join(tmp, "logs")
    run = runs.claim_run_dir(os.path.join(logs, "cat20260101T1200"))
    runs.write_state(run, {"version": 1, "classes": ["Cat"], "data": "data", "seed": 0, "epochs": 2,
                           "schedule": [], "completed_epoch": 1})
    for extra in (["--set", "IMAGE_MAX_DIM=512"], ["--config", os.path.join(tmp, "missing.toml")]):
        rc, err = _train_main(["--resume", "--logs", logs, *extra])
        assert rc == 2 and " ".join(extra) in err and "start a new run" in err and run in err, (rc, err)
    assert runs.read_state(run)["completed_epoch"] == 1  # the run is untouched
    return CLEAR
