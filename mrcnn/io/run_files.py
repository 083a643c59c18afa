"""What a run folder holds besides its layout (``mrcnn.io.runs``): results.csv / results.png
rows, best.h5 / last.h5 links, TensorBoard tags. TF-free."""
from __future__ import annotations

import csv
import io
import os

from mrcnn.io.fsio import atomic_link, atomic_path, atomic_write_text

RESULTS_CSV = "results.csv"
RESULTS_PNG = "results.png"


def link_or_copy(src, dst):
    """``dst`` as a hard link to ``src`` (a copy without hard links), swapped in atomically. Safe
    because every checkpoint is written as a new file (atomic rename), never in place: a later
    epoch never changes what ``best.h5`` holds."""
    atomic_link(src, dst)


def summary_tag(key):
    """TensorBoard tag of a log key, grouped so the losses and the LR come first:
    ``loss`` -> ``loss/total``, ``mrcnn_mask_loss`` -> ``loss/mrcnn_mask``, ``learning_rate`` ->
    ``lr``, ``segm_AP`` -> ``metrics/segm_AP``. Train and validation share a tag in their own
    run folders (train/, validation/), so TensorBoard draws them on one card."""
    key = key[4:] if key.startswith("val_") else key
    if key == "loss":
        return "loss/total"
    if key.endswith("_loss"):
        return "loss/" + key[:-5]
    if key in ("learning_rate", "lr"):
        return "lr"
    return "metrics/" + key


def crop_to_content(image, pad=6, white=245):
    """``image`` [H, W, 3] uint8 without its blank (near-white) margins, ``pad`` px kept."""
    import numpy as np

    ink = (np.asarray(image)[..., :3] < white).any(axis=-1)
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if not len(rows):
        return image
    y1, y2 = max(rows[0] - pad, 0), min(rows[-1] + pad + 1, image.shape[0])
    x1, x2 = max(cols[0] - pad, 0), min(cols[-1] + pad + 1, image.shape[1])
    return image[y1:y2, x1:x2]


def append_results(run_dir, row):
    """Add or replace the row of ``row['epoch']`` in results.csv (atomically; columns may grow)."""
    path = os.path.join(run_dir, RESULTS_CSV)
    rows = read_results(run_dir)
    rows = [r for r in rows if int(r["epoch"]) != int(row["epoch"])] + [row]
    rows.sort(key=lambda r: int(r["epoch"]))
    fields = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, restval="")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())
    return rows


def read_results(run_dir):
    path = os.path.join(run_dir, RESULTS_CSV)
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf8") as f:
        return list(csv.DictReader(f))


def plot_results(run_dir):
    """results.png: each loss, train against validation, the validation AP and the LR per epoch."""
    from mrcnn.evaluation import results_plot

    rows = read_results(run_dir)
    if not rows:
        return None
    path = os.path.join(run_dir, RESULTS_PNG)
    with atomic_path(path, suffix=".png") as tmp:
        results_plot.plot(rows, tmp)
    return path
