"""matterport's inspection plots (``inspect_model`` / ``inspect_weights`` notebooks), re-exported
by ``mrcnn.visualize``: ``plot_overlaps``, ``draw_rois``, ``draw_box``, ``display_table``,
``display_weight_stats``. Boxes are (y1, x1, y2, x2) pixels. No TensorFlow.
"""
import itertools

import numpy as np

from mrcnn.viz.display import apply_mask, pyplot


def plot_overlaps(gt_class_ids, pred_class_ids, pred_scores, overlaps, class_names, threshold=0.5):
    """Grid of IoU ``overlaps`` [n_pred, n_gt] (from ``compute_ap``): rows are predictions
    "name (score)", columns ground truths; cells over ``threshold`` say "match" (same class)
    or "wrong". Zero class ids (padding) are dropped. Returns the axes."""
    plt = pyplot()
    gt_class_ids = np.asarray(gt_class_ids)
    pred_class_ids = np.asarray(pred_class_ids)
    gt_class_ids = gt_class_ids[gt_class_ids != 0]
    pred_class_ids = pred_class_ids[pred_class_ids != 0]
    overlaps = np.asarray(overlaps).reshape(len(pred_class_ids), len(gt_class_ids))
    fig, ax = plt.subplots(1, figsize=(12, 10))
    ax.imshow(overlaps, interpolation="nearest", cmap=plt.cm.Blues)
    ax.set_yticks(np.arange(len(pred_class_ids)))
    ax.set_yticklabels(["{} ({:.2f})".format(class_names[int(c)], pred_scores[i])
                        for i, c in enumerate(pred_class_ids)])
    ax.set_xticks(np.arange(len(gt_class_ids)))
    ax.set_xticklabels([class_names[int(c)] for c in gt_class_ids], rotation=90)
    half = overlaps.max(initial=0) / 2.0
    for i, j in itertools.product(range(overlaps.shape[0]), range(overlaps.shape[1])):
        v = overlaps[i, j]
        text = ("match" if gt_class_ids[j] == pred_class_ids[i] else "wrong") if v > threshold else ""
        color = "white" if v > half else "black" if v > 0 else "grey"
        ax.text(j, i, "{:.3f}\n{}".format(v, text), ha="center", va="center", fontsize=9, color=color)
    ax.set_xlabel("Ground Truth")
    ax.set_ylabel("Predictions")
    fig.tight_layout()
    return ax


def draw_rois(image, rois, refined_rois, mask, class_ids, class_names, limit=10):
    """Up to ``limit`` random ROIs [N, 4] (dashed; grey for background) with, for positives,
    the refined box [N, 4], a line joining the corners, the class name and the mask
    ([N, h, w] float, pasted into the ROI). Prints the positive/negative counts; returns the axes."""
    from matplotlib import lines, patches

    from mrcnn.structures.masks import unmold_mask
    plt = pyplot()
    rois, class_ids = np.asarray(rois), np.asarray(class_ids)
    masked = np.array(image, dtype=np.float64)
    ids = np.arange(rois.shape[0])
    if len(ids) > limit:
        ids = np.random.choice(ids, limit, replace=False)
    fig, ax = plt.subplots(1, figsize=(12, 12))
    ax.set_title("Showing {} random ROIs out of {}".format(len(ids), rois.shape[0])
                 if rois.shape[0] > limit else "{} ROIs".format(len(ids)))
    ax.set_ylim(image.shape[0] + 20, -20)
    ax.set_xlim(-50, image.shape[1] + 20)
    ax.axis("off")
    for i in ids:
        color = np.random.rand(3)
        y1, x1, y2, x2 = rois[i][:4]
        ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, linewidth=2, linestyle="dashed",
                                       edgecolor=color if class_ids[i] else "gray", facecolor="none"))
        if class_ids[i]:
            ry1, rx1, ry2, rx2 = refined_rois[i][:4]
            ax.add_patch(patches.Rectangle((rx1, ry1), rx2 - rx1, ry2 - ry1, linewidth=2,
                                           edgecolor=color, facecolor="none"))
            ax.add_line(lines.Line2D([x1, rx1], [y1, ry1], color=color))
            ax.text(rx1, ry1 + 8, class_names[int(class_ids[i])], color="w", size=11)
            m = unmold_mask(mask[i], rois[i][:4].astype(np.int32), image.shape)
            masked = apply_mask(masked, m, color)
    ax.imshow(np.clip(masked, 0, 255).astype(np.uint8))
    positives = int(np.sum(class_ids > 0))
    print("Positive ROIs: ", positives)
    print("Negative ROIs: ", int(np.sum(class_ids == 0)))
    print("Positive Ratio: {:.2f}".format(positives / max(class_ids.shape[0], 1)))
    return ax


def draw_box(image, box, color):
    """Draw a 2-pixel box (y1, x1, y2, x2) of RGB ``color`` into ``image`` in place; returns it."""
    y1, x1, y2, x2 = (int(v) for v in box[:4])
    image[y1:y1 + 2, x1:x2] = color
    image[y2:y2 + 2, x1:x2] = color
    image[y1:y2, x1:x1 + 2] = color
    image[y1:y2, x2:x2 + 2] = color
    return image


def display_table(table):
    """Show rows of values as an HTML table in Jupyter, or as aligned text elsewhere."""
    rows = [[str(c) for c in row] for row in table]
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display
        if get_ipython() is not None:
            html = "".join("<tr>" + "".join("<td>{:40}</td>".format(c) for c in r) + "</tr>" for r in rows)
            display(HTML("<table>" + html + "</table>"))
            return
    except ImportError:
        pass
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(max(map(len, rows), default=0))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def weight_stats(model):
    """Rows [name, shape, min, max, std] for every weight of ``model.get_trainable_layers()``,
    with matterport's "*** dead?" (constant, except Conv2D biases) and "*** Overflow?" (|w| > 1000)."""
    table = [["WEIGHT NAME", "SHAPE", "MIN", "MAX", "STD"]]
    for layer in model.get_trainable_layers():
        for i, (value, variable) in enumerate(zip(layer.get_weights(), layer.weights)):
            alert = ""
            if value.min() == value.max() and not (layer.__class__.__name__ == "Conv2D" and i == 1):
                alert += "<span style='color:red'>*** dead?</span>"
            if np.abs(value.min()) > 1000 or np.abs(value.max()) > 1000:
                alert += "<span style='color:red'>*** Overflow?</span>"
            table.append([variable.name + alert, str(value.shape), "{:+9.4f}".format(value.min()),
                          "{:+10.4f}".format(value.max()), "{:+9.4f}".format(value.std())])
    return table


def display_weight_stats(model):
    """Table of every trainable weight's shape, min, max and std (see ``weight_stats``)."""
    display_table(weight_stats(model))
