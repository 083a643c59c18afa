"""Attacks on run folders and resume (mrcnn.runs, train.py --resume, mrcnn.weights_io)."""
from __future__ import annotations

import os
import subprocess
import sys
import types

from tests.attack import SURVIVED, attack

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@attack(2, "two trainings claim a run folder in the same minute")
def same_minute(tmp):
    base = os.path.join(tmp, "logs", "cat20260101T1200")
    code = ("import sys, time; from mrcnn import runs\n"
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
    holder = types.SimpleNamespace(model_dir=os.path.join(tmp, "logs"), _name=lambda: "cat")
    ckpt = os.path.join(tmp, "logs", "cat20260101T1200-2", "mask_rcnn_cat_0003.h5")
    MaskRCNN.set_log_dir(holder, ckpt)
    assert holder.log_dir == os.path.dirname(ckpt), holder.log_dir
    assert holder.epoch == 3
    return SURVIVED
