"""Multi-worker training on one machine: two processes on 127.0.0.1 (CPU) under
MultiWorkerMirroredStrategy train the tiny config for 3 steps at a global batch of 2.

Both workers must end with the same weights, equal (to float tolerance) to one process running
MirroredStrategy over two logical CPU devices on the same global batches from the same initial
weights; only the chief (worker 0) writes a checkpoint. A mixed_float16 run on two mirrored
replicas trains with finite weights, and one replica's float16 overflow skips the step everywhere.
Each run is a ``tests/engine/dist_worker.py`` subprocess, because a strategy must be created before
TensorFlow runs anything else.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
WORKER = os.path.join(HERE, "dist_worker.py")
TIMEOUT = 420  # seconds for one run; the runs take ~30-60 s on 2 idle cores
PORT_CLASH = ("address already in use", "failed to add port", "could not start grpc server")

pytestmark = pytest.mark.slow


def _env(tf_config=None):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(PYTHONPATH=ROOT + os.pathsep + env.get("PYTHONPATH", ""), TF_CPP_MIN_LOG_LEVEL="2",
               CUDA_VISIBLE_DEVICES="-1", PYTHONHASHSEED="0")
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return env


def _free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _start(args, log_path, tf_config=None):
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, WORKER] + args, cwd=ROOT, env=_env(tf_config),
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    proc.log_path = log_path
    log.close()
    return proc


def _wait(procs, deadline):
    """Exit codes of ``procs``. If one fails, the rest are killed (a worker whose peer died would
    wait for it forever); past ``deadline`` all are killed and the test fails."""
    while any(p.poll() is None for p in procs):
        failed = [p for p in procs if p.poll() not in (None, 0)]
        if failed or time.monotonic() > deadline:
            _kill(procs)
            if not failed:
                pytest.fail(f"distributed run timed out after {TIMEOUT} s:\n"
                            + "\n".join(_tail(p.log_path, 2000) for p in procs))
        time.sleep(0.2)
    return [p.returncode for p in procs]


def _kill(procs):
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def _tail(path, n=4000):
    with open(path, errors="replace") as f:
        return f.read()[-n:]


def _result(path):
    for line in open(path, errors="replace"):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise AssertionError(f"no RESULT line in {path}:\n{_tail(path)}")


def _load(path):
    with np.load(path) as z:
        names = list(z["names"])
        weights = [z[f"w{i:04d}"] for i in range(len(names))]
        return names, weights, z["losses"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Initial weights; two MultiWorkerMirroredStrategy workers; the MirroredStrategy reference;
    a mixed-precision MirroredStrategy run. All train from the same initial weights."""
    tmp = tmp_path_factory.mktemp("dist")
    init_h5, init_npz = str(tmp / "init.h5"), str(tmp / "init.npz")
    init = subprocess.run([sys.executable, WORKER, "init", "--weights", init_h5, "--out", init_npz,
                           "--model-dir", str(tmp / "init_logs")],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert init.returncode == 0, init.stdout[-3000:] + init.stderr[-3000:]

    def train_args(name, strategy, *extra):
        return ["train", "--strategy", strategy, "--weights", init_h5, "--model-dir", str(tmp / f"{name}_logs"),
                "--out", str(tmp / f"{name}.npz"), *extra]

    started = []
    try:
        # The references run alongside the workers, which spend much of their time waiting on each other.
        ref = _start(train_args("mirrored", "mirrored"), str(tmp / "mirrored.log"))
        # mixed_float16 on 2 replicas: 8 steps, as the first ones overflow until the loss scale drops.
        ref_mp = _start(train_args("mirrored_mp", "mirrored", "--mixed-precision", "--steps", "8", "--no-validation"),
                        str(tmp / "mirrored_mp.log"))
        started += [ref, ref_mp]
        for attempt in range(3):
            ports = _free_ports(2)
            cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
            workers = [_start(train_args(f"worker{i}", "multiworker"), str(tmp / f"worker{i}_try{attempt}.log"),
                              {"cluster": cluster, "task": {"type": "worker", "index": i}}) for i in range(2)]
            started += workers
            codes = _wait(workers, time.monotonic() + TIMEOUT)
            logs = [_tail(w.log_path, 20000).lower() for w in workers]
            if all(c == 0 for c in codes) or not any(m in log for log in logs for m in PORT_CLASH):
                break
        for w, c in zip(workers, codes):
            assert c == 0, f"worker failed (exit {c}):\n{_tail(w.log_path)}"
        deadline = time.monotonic() + TIMEOUT
        for p in (ref, ref_mp):
            assert _wait([p], deadline) == [0], _tail(p.log_path)
    finally:
        _kill(started)
    return {"tmp": tmp, "init": _load(init_npz),
            "workers": [_load(str(tmp / f"worker{i}.npz")) for i in range(2)],
            "worker_info": [_result(w.log_path) for w in workers],
            "mirrored": _load(str(tmp / "mirrored.npz")), "mirrored_info": _result(ref.log_path),
            "mirrored_mp": _load(str(tmp / "mirrored_mp.npz")), "mirrored_mp_info": _result(ref_mp.log_path)}


def test_both_workers_end_with_identical_weights(runs):
    (names0, w0, loss0), (names1, w1, loss1) = runs["workers"]
    assert [i["replicas"] for i in runs["worker_info"]] == [2, 2]
    assert names0 == names1 and len(w0) == len(w1) > 100
    for name, a, b in zip(names0, w0, w1):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6, err_msg=name)
    # The reported epoch losses (train and validation) are all-reduced means: the same on both.
    assert loss0.shape == (12,) and np.all(np.isfinite(loss0))
    np.testing.assert_allclose(loss0, loss1, rtol=1e-6)


def test_training_changed_the_weights(runs):
    """Guards the comparisons below: identical weights because nothing trained would pass them."""
    init_names, init_w, _ = runs["init"]
    names, w, _ = runs["workers"][0]
    assert names == init_names
    changed = [n for n, a, b in zip(names, init_w, w) if np.abs(a - b).max() > 1e-6]
    # Every trainable layer kind moved: backbone, FPN, RPN, box and mask heads.
    for part in ("conv1", "res5a_branch2c", "fpn_p2", "rpn_conv_shared", "mrcnn_class_logits", "mrcnn_mask"):
        assert any(part in n for n in changed), (part, changed[:20])
    # Frozen BatchNorm (TRAIN_BN=False) keeps its moving statistics.
    stats = [(a, b) for n, a, b in zip(names, init_w, w) if "moving_" in n]
    assert stats and all(np.array_equal(a, b) for a, b in stats)


def test_workers_match_one_process_on_the_same_global_batch(runs):
    """MirroredStrategy on 2 logical CPUs in one process: replica r sees the same image as worker r."""
    ref_names, ref_w, ref_loss = runs["mirrored"]
    assert runs["mirrored_info"]["replicas"] == 2
    init_w = runs["init"][1]
    for names, w, loss in runs["workers"]:
        assert names == ref_names
        for name, a, b, a0 in zip(names, w, ref_w, init_w):
            # Tolerance relative to the size of the update, so a wrong gradient scale fails.
            step = np.abs(b - a0).max()
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * step + 1e-7, err_msg=name)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-4)


def test_replicas_draw_different_sampling_seeds(runs):
    """Each replica folds its global id into the step seed: the two replicas of one step sample
    ROIs differently, and worker r's replica gets the seed of replica r in the one-process run."""
    mirrored = runs["mirrored_info"]["replica_seeds"]
    assert sorted(mirrored) == ["0", "1"] and mirrored["0"] != mirrored["1"]
    for i, info in enumerate(runs["worker_info"]):
        assert info["replica_seeds"] == {str(i): mirrored[str(i)]}


def test_only_the_chief_writes_checkpoints_and_logs(runs):
    tmp = runs["tmp"]
    chief, other = runs["worker_info"]
    assert chief["chief"] is True and other["chief"] is False
    chief_files = [os.path.join(d, f) for d, _, fs in os.walk(tmp / "worker0_logs") for f in fs]
    assert any(f.endswith(".h5") for f in chief_files), chief_files
    assert chief["history"][-1]["checkpoint"] in chief_files
    assert any(f.endswith("config.toml") for f in chief_files)
    other_files = [os.path.join(d, f) for d, _, fs in os.walk(tmp / "worker1_logs") for f in fs]
    assert other_files == [], other_files
    assert "checkpoint" not in other["history"][-1]


def test_mixed_precision_on_two_replicas_trains_finite(runs):
    """LossScaleOptimizer on 2 replicas: early float16 overflows skip steps on both replicas alike
    (the scale halves from 2**15), later steps apply, and every weight and loss stays finite."""
    info = runs["mirrored_mp_info"]
    assert info["replicas"] == 2
    assert info["loss_scale"] < 2.0 ** 15 and 1 <= info["applied"] < 8, info
    names, w, losses = runs["mirrored_mp"]
    assert np.all(np.isfinite(losses[:6])) and all(np.all(np.isfinite(a)) for a in w)
    init = dict(zip(*runs["init"][:2]))
    for name in ("conv1/kernel", "fpn_p2/kernel", "mrcnn_mask/kernel"):
        a = w[names.index(name)]
        assert a.dtype == np.float32 and np.abs(a - init[name]).max() > 1e-6, name


def test_one_replica_overflowing_skips_the_step_on_every_replica(tmp_path):
    """mixed_float16 on 2 replicas: LossScaleOptimizer judges overflow from the first local
    replica's gradients before the all-reduce, so an inf on replica 1 alone would be applied and
    poison every weight. ``training.agree_on_overflow`` makes the skip global."""
    out = subprocess.run([sys.executable, WORKER, "overflow", "--bad", "1", "0", "-1", "--agree"], cwd=ROOT,
                         env=_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    steps = json.loads(line[len("RESULT "):])
    # Replica 1, then replica 0 overflows: both steps skipped, weights untouched, scale 4 -> 2 -> 1.
    assert [(s["w"], s["scale"], s["applied"]) for s in steps[:2]] == [([1.0] * 3, 2.0, 0), ([1.0] * 3, 1.0, 0)]
    # Then a clean step: each replica's gradient 4 / scale 1, summed over 2 replicas, lr 0.5.
    assert steps[2]["applied"] == 1 and steps[2]["w"] == [1.0 - 0.5 * 8.0] * 3
