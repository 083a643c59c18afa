"""Data builders for the attacks: tiny files a user's worst day would produce."""
from __future__ import annotations

import contextlib
import io
import os
import subprocess
import tempfile

import numpy as np


@contextlib.contextmanager
def tiny_filesystem(size_kib=1024):
    """Yield a folder on a ``size_kib`` KiB tmpfs (a disk that fills up), or None when this
    process may not mount one (not root): the caller then shrinks the free-space probe instead."""
    d = tempfile.mkdtemp(prefix="attack-fs-")
    ok = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", d],
        capture_output=True, timeout=10).returncode == 0
    try:
        yield d if ok else None
    finally:
        if ok:
            subprocess.run(["umount", d], capture_output=True, timeout=10)
        os.rmdir(d)


def write_checkpoint(path, layers=(("conv1", (3, 3)), ("dense", (4, 2))), seed=0):
    """A Keras-2-layout weights file like ours (h5py only, no TensorFlow): one group per layer."""
    import h5py
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n, _ in layers], dtype="S")
        for name, shape in layers:
            g = f.create_group(name)
            g.attrs["weight_names"] = np.array([f"{name}/kernel:0".encode()], dtype="S")
            g.create_dataset(f"{name}/kernel:0", data=rng.normal(size=shape).astype(np.float32))
    return path


def truncate(path, keep=0.5):
    """Cut ``path`` to ``keep`` of its size: what a power loss during the write leaves."""
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(int(size * keep))
    return path


def png_bytes(array, mode=None, **save):
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG", **save)
    return buf.getvalue()


def bomb_png(side=20000):
    """A 1-bit ``side`` x ``side`` PNG of a few hundred KB that decodes to side**2 pixels."""
    from PIL import Image
    buf = io.BytesIO()
    Image.new("1", (side, side)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()
