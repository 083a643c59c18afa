"""results.png of a run: each loss, train against validation, the validation AP and the LR,
per epoch (integer ticks), like Ultralytics' results.png. TensorFlow-free (matplotlib only)."""
from __future__ import annotations

import os

LOSSES = (("loss", "total loss"), ("rpn_class_loss", "rpn_class_loss"), ("rpn_bbox_loss", "rpn_bbox_loss"),
          ("mrcnn_class_loss", "mrcnn_class_loss"), ("mrcnn_bbox_loss", "mrcnn_bbox_loss"),
          ("mrcnn_mask_loss", "mrcnn_mask_loss"))
APS = (("val_segm_AP", "mask AP"), ("val_segm_AP50", "mask AP50"), ("val_bbox_AP", "box AP"))


def _series(rows, key):
    pts = [(int(r["epoch"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
    pts = [(e, v) for e, v in pts if v == v and not (key.startswith("val_") and key.endswith(("AP", "AP50")) and v < 0)]
    return [e for e, _ in pts], [v for _, v in pts]


def plot(rows, path):
    """Draw ``rows`` (results.csv rows) into ``path`` (a file or a binary stream)."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(16, 7))
    axes = fig.subplots(2, 4).ravel()
    for ax, (key, title) in zip(axes, LOSSES):
        for k, label, style in ((key, "train", "o-"), ("val_" + key, "validation", "s--")):
            x, y = _series(rows, k)
            if x:
                ax.plot(x, y, style, label=label, markersize=4)
        ax.set_title(title)
    for key, label in APS:
        x, y = _series(rows, key)
        if x:
            axes[6].plot(x, y, "o-", label=label, markersize=4)
    axes[6].set_title("validation AP")
    axes[6].set_ylim(0, 1)
    x, y = _series(rows, "lr")
    if x:
        axes[7].plot(x, y, "o-", color="gray", markersize=4)
    axes[7].set_title("learning rate (end of epoch)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80, format="png")
    return path
