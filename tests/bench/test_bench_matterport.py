"""`python -m bench.bench_matterport`: the child protocol (weights file written by us, loaded by
name in a child interpreter, detect() outputs sent back and compared) run end to end. CI has no
TF 2.15 environment with matterport's code, so the child runs this checkout's mrcnn, which keeps
matterport's API: the comparison must then find every detection matched."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_bench_matterport_against_this_checkout_agrees(tmp_path):
    out = tmp_path / "matterport.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-m", "bench.bench_matterport", "--matterport-python", sys.executable,
                           "--matterport-repo", ROOT, "--sizes", "128", "--rounds", "1", "--repeats", "1",
                           "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (rec,) = json.loads(out.read_text())["records"]
    assert rec["size"] == 128 and rec["matterport_load_weights_worked"] is True
    assert len(rec["ours"]["float32"]) == 1 and len(rec["matterport"]) == 1
    assert rec["detections"]["float32"] == rec["detections"]["matterport"] > 0
    a = rec["agreement"]["float32"]
    assert a["ours"] == a["theirs"] == a["matched"] > 0
    assert a["max_score_diff"] <= 1e-6 and a["min_mask_iou"] >= 0.99
    assert "speed-up" in proc.stdout


def test_agreement_counts_only_same_class_boxes_that_overlap(tmp_path):
    from bench.bench_matterport import agreement

    masks = np.zeros((20, 20, 3), bool)
    masks[2:8, 2:8, 0] = masks[10:18, 10:18, 1] = masks[0:4, 12:20, 2] = True
    ours = {"rois": np.array([[2, 2, 8, 8], [10, 10, 18, 18], [0, 12, 4, 20]]), "class_ids": np.array([1, 2, 3]),
            "scores": np.array([0.9, 0.8, 0.7], np.float32), "masks": masks}
    theirs_masks = masks.copy()
    theirs_masks[2:4, 2:8, 0] = False     # mask IoU 24/36
    np.savez(tmp_path / "t.npz", rois=np.array([[2, 2, 8, 8], [10, 10, 18, 18], [0, 0, 4, 8]]),
             class_ids=np.array([1, 3, 3]), scores=np.array([0.85, 0.8, 0.7], np.float32),
             masks=np.packbits(theirs_masks), mask_shape=np.array(theirs_masks.shape))
    a = agreement(ours, str(tmp_path / "t.npz"))
    # The second box differs in class, the third in place: one match.
    assert (a["ours"], a["theirs"], a["matched"]) == (3, 3, 1)
    assert a["max_score_diff"] == pytest.approx(0.05, abs=1e-6)
    assert a["min_mask_iou"] == pytest.approx(24 / 36)
