"""Process-level facts and switches of a training run: the chief, git commit, versions, determinism."""
from __future__ import annotations

import contextlib
import os
import subprocess

import numpy as np
import tensorflow as tf


def git_commit(path="."):
    """The current git commit of ``path`` or "unknown" (never raises)."""
    try:
        out = subprocess.run(["git", "-C", os.path.abspath(path), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions():
    """{"tensorflow", "keras", "numpy": version string}, for the run's config.toml."""
    import keras
    return {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__}


def is_chief(strategy):
    """True unless this process is a non-chief worker of a multi-worker strategy."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return True
    spec = resolver.cluster_spec().as_dict()
    if not spec:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if "chief" in spec:
        return task_type == "chief"
    return task_type in (None, "worker") and (task_id or 0) == 0


@contextlib.contextmanager
def op_determinism(on):
    """TensorFlow's op determinism for the duration of ``train()`` when ``on``.

    Same seed, same numbers: TensorFlow's CPU gradients otherwise differ between runs in the last
    bits (multi-threaded reductions), and the difference grows from step 2 on. Scoped, because the
    switch is process-wide (it would change later code, e.g. XLA has no deterministic MaxPool
    gradient); not with XLA_COMPILE for that reason.
    """
    from tensorflow.python.framework import config as tf_config

    turn_on = on and not tf_config.is_op_determinism_enabled()
    if turn_on:
        tf_config.enable_op_determinism()
    try:
        yield
    finally:
        if turn_on:
            tf_config.disable_op_determinism()


def cpu_flags():
    """The CPU feature flags of /proc/cpuinfo (an empty set where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def auto_precision(flags=None, gpus=None, environ=None):
    """(MIXED_PRECISION, why) for ``train.py --mixed-precision auto``: "mixed_bfloat16" on a host
    without GPUs whose CPU has AMX bfloat16 tiles with oneDNN on (measured there: 1.7-2.9x faster
    steps, the same AP; BENCHMARKS.md), else None (float32). Other CPUs emulate bfloat16 or run
    it without AMX, untested here, so they keep float32. ``flags``/``gpus``/``environ`` default
    to this host's."""
    flags = cpu_flags() if flags is None else set(flags)
    gpus = tf.config.list_physical_devices("GPU") if gpus is None else gpus
    environ = os.environ if environ is None else environ
    if gpus:
        return None, "float32 on GPUs (--mixed-precision float16 for tensor cores)"
    if "amx_bf16" not in flags:
        return None, "float32: this CPU has no AMX bfloat16"
    if environ.get("TF_ENABLE_ONEDNN_OPTS", "").strip().lower() in ("0", "false", "off"):
        return None, "float32: oneDNN is off (TF_ENABLE_ONEDNN_OPTS=0), so bfloat16 would be emulated"
    return "mixed_bfloat16", "bfloat16: this CPU has AMX (--mixed-precision off for float32)"
