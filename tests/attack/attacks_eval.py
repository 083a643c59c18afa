"""Attacks on evaluation (mrcnn.evaluation.coco, evaluate.py)."""
from __future__ import annotations

import numpy as np

from tests.attack import SURVIVED, attack


def _crowd(n, size=40):
    """GT of ``n`` distinct one-pixel-wide instances on a size x size image, and a perfect prediction."""
    masks = np.zeros((size, size, n), bool)
    boxes = np.zeros((n, 4), np.float64)
    for k in range(n):
        y, x = divmod(k, size)
        masks[y, x, k] = True
        boxes[k] = (y, x, y + 1, x + 1)
    gt = {"boxes": boxes, "class_ids": np.ones(n, int), "masks": masks}
    pred = {"rois": boxes, "class_ids": np.ones(n, int), "scores": np.linspace(1, 0.5, n), "masks": masks}
    return gt, pred


@attack(1, "300 GT instances in one image, pycocotools backend")
def many_instances(tmp):
    from mrcnn.evaluation.coco import COCOEvaluator
    results = {}
    for backend in ("pycocotools", "faster"):
        ev = COCOEvaluator(["BG", "cat"], backend=backend)
        ev.add("crowd", *_crowd(300))
        results[backend] = ev.summarize(verbose=False)
    p, f = results["pycocotools"], results["faster"]
    assert p["num_gt"] == 300 and p["segm"]["AP"] > 0.3, p["segm"]
    for t in ("segm", "bbox"):
        for k, v in p[t].items():
            assert abs(v - f[t][k]) < 1e-9, (t, k, v, f[t][k])
    assert all(g[6] == 1 for g in ev._gt), "GT area must be the mask's pixel count"
    return SURVIVED
