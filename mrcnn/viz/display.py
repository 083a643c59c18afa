"""Display and save detections (matterport's ``mrcnn.visualize`` names, re-exported there).

matplotlib is imported lazily. Unless a backend was chosen already (pyplot
imported, or MPLBACKEND set, as Jupyter does), the headless "Agg" backend is
selected, so this works on servers. With ``save_path`` a PNG is written
atomically and the figure closed.

Boxes are (y1, x1, y2, x2) pixels, y2/x2 exclusive; masks are bool [H, W, N].
"""
import colorsys
import os
import random
import sys

import numpy as np

from mrcnn.io.fsio import atomic_open


# matplotlib's non-interactive backends (plt.show() would only warn there).
_FILE_BACKENDS = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}


def pyplot():
    import matplotlib
    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def finish_figure(fig, save_path, auto_show, close=True):
    """Save (atomically) and close, or show when the backend can show."""
    import matplotlib
    plt = pyplot()
    if save_path is not None:
        save_path = os.fspath(save_path)
        try:
            with atomic_open(save_path, "wb") as f:
                fig.savefig(f, format="png")
        finally:
            if close:
                plt.close(fig)
    elif auto_show:
        if matplotlib.get_backend().lower() not in _FILE_BACKENDS:
            plt.show()
    return save_path


def random_colors(N, bright=True, seed=None):
    """N distinct RGB colours (floats in [0, 1]) in a shuffled order;
    ``seed`` makes the order reproducible."""
    brightness = 1.0 if bright else 0.7
    colors = [colorsys.hsv_to_rgb(i / max(N, 1), 1, brightness) for i in range(N)]
    (random.Random(seed) if seed is not None else random).shuffle(colors)
    return colors


def apply_mask(image, mask, color, alpha=0.5):
    """Blend ``color`` (RGB floats in [0, 1]) into ``image`` [H, W, 3] where
    ``mask`` [H, W] is set. Modifies ``image`` in place and returns it."""
    where = np.asarray(mask).astype(bool)
    blended = image[where] * (1 - alpha) + alpha * np.asarray(color[:3], float) * 255
    image[where] = blended.astype(image.dtype) if image.dtype.kind in "iu" else blended
    return image


def _mask_contours(mask):
    """Outline polygons of a mask as [(x, y), ...] arrays."""
    from skimage.measure import find_contours
    padded = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), np.uint8)
    padded[1:-1, 1:-1] = mask  # pad so shapes touching the border close
    return [np.fliplr(v) - 1 for v in find_contours(padded, 0.5)]


def display_instances(image, boxes, masks, class_ids, class_names, scores=None, title="",
                      figsize=(16, 16), ax=None, show_mask=True, show_bbox=True, colors=None,
                      captions=None, save_path=None):
    """Draw instances on an image: dashed boxes, "name score" captions, masks
    blended at alpha 0.5 with outlines.

    image [H, W, 3]; boxes int [N, 4]; masks bool [H, W, N]; class_ids [N];
    scores [N] or None; captions: optional N strings replacing the defaults.
    With save_path, writes a PNG and closes the figure. Returns the axes.
    """
    from matplotlib import patches
    plt = pyplot()
    boxes = np.asarray(boxes).reshape(-1, 4)
    N = boxes.shape[0]
    if not N:
        print("\n*** No instances to display *** \n")
    else:
        assert boxes.shape[0] == masks.shape[-1] == len(class_ids), (
            "boxes, masks and class_ids disagree on the instance count: %d, %d, %d"
            % (boxes.shape[0], masks.shape[-1], len(class_ids)))
    auto_show = ax is None
    fig = None
    if ax is None:
        fig, ax = plt.subplots(1, figsize=figsize)
    colors = colors or random_colors(N)
    height, width = image.shape[:2]
    ax.set_ylim(height + 10, -10)
    ax.set_xlim(-10, width + 10)
    ax.axis("off")
    ax.set_title(title)
    masked_image = np.array(image, dtype=np.uint32)
    for i in range(N):
        color = colors[i]
        if not np.any(boxes[i]):
            continue  # padding row: skip
        y1, x1, y2, x2 = boxes[i]
        if show_bbox:
            ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, linewidth=2, alpha=0.7,
                                           linestyle="dashed", edgecolor=color, facecolor="none"))
        if captions:
            caption = captions[i]
        else:
            label = class_names[class_ids[i]]
            score = scores[i] if scores is not None else None
            caption = "{} {:.3f}".format(label, score) if score else label
        ax.text(x1, y1 + 8, caption, color="w", size=11, backgroundcolor="none")
        mask = masks[:, :, i]
        if show_mask:
            masked_image = apply_mask(masked_image, mask, color)
        for verts in _mask_contours(mask):
            ax.add_patch(patches.Polygon(verts, facecolor="none", edgecolor=color))
    ax.imshow(masked_image.astype(np.uint8))
    if fig is not None:
        finish_figure(fig, save_path, auto_show and save_path is None)
    elif save_path is not None:  # the caller's figure: save it, leave it open
        finish_figure(ax.figure, save_path, False, close=False)
    return ax


def display_images(images, titles=None, cols=4, cmap=None, norm=None, interpolation=None,
                   save_path=None):
    """Show a grid of images with optional titles."""
    plt = pyplot()
    titles = titles if titles is not None else [""] * len(images)
    rows = (len(images) + cols - 1) // cols
    fig = plt.figure(figsize=(14, 14 * rows // cols))
    for i, (image, title) in enumerate(zip(images, titles), start=1):
        ax = fig.add_subplot(rows, cols, i)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
        ax.imshow(np.asarray(image).astype(np.uint8), cmap=cmap, norm=norm,
                  interpolation=interpolation)
    finish_figure(fig, save_path, save_path is None)
    return fig


def display_top_masks(image, mask, class_ids, class_names, limit=4, save_path=None):
    """Show the image and the masks of its ``limit`` largest classes."""
    class_ids = np.asarray(class_ids)
    to_display = [image]
    titles = ["H x W={}x{}".format(image.shape[0], image.shape[1])]
    unique = np.unique(class_ids)
    areas = [np.sum(mask[:, :, np.where(class_ids == c)[0]]) for c in unique]
    top = [c for c, a in sorted(zip(unique, areas), key=lambda r: r[1], reverse=True) if a > 0]
    for i in range(limit):
        class_id = top[i] if i < len(top) else -1
        m = mask[:, :, np.where(class_ids == class_id)[0]]
        to_display.append(np.sum(m * np.arange(1, m.shape[-1] + 1), -1))
        titles.append(class_names[class_id] if class_id != -1 else "-")
    return display_images(to_display, titles=titles, cols=limit + 1, cmap="Blues_r",
                          save_path=save_path)


def color_splash(image, masks):
    """Instances in colour on a greyscale copy of the image (balloon sample).

    image: RGB [H, W, 3]; masks: bool [H, W, N]. Returns uint8 [H, W, 3].
    """
    image = np.asarray(image)
    # Same luminance weights as skimage.color.rgb2gray.
    gray = (image[..., :3].astype(np.float64) @ [0.2125, 0.7154, 0.0721])[..., None]
    gray = np.repeat(gray, 3, axis=-1)
    if masks.shape[-1] > 0:
        keep = np.asarray(masks).astype(bool).any(axis=-1, keepdims=True)
        return np.where(keep, image[..., :3], gray).astype(np.uint8)
    return gray.astype(np.uint8)


def display_differences(image, gt_box, gt_class_id, gt_mask, pred_box, pred_class_id,
                        pred_score, pred_mask, class_names, title="", ax=None, show_mask=True,
                        show_box=True, iou_threshold=0.5, score_threshold=0.5,
                        figsize=(16, 8), save_path=None):
    """Ground truth (left) beside predictions (right). Predictions matched to a
    ground truth (mask IoU >= iou_threshold, same class) are green, others red; ground
    truth no prediction matched (missed) is orange; captions give "name score / IoU"."""
    from mrcnn.evaluation.metrics import compute_matches
    plt = pyplot()
    order = np.argsort(-np.asarray(pred_score), kind="stable")
    pred_box, pred_class_id = np.asarray(pred_box)[order], np.asarray(pred_class_id)[order]
    pred_score, pred_mask = np.asarray(pred_score)[order], np.asarray(pred_mask)[..., order]
    gt_match, pred_match, overlaps = compute_matches(
        gt_box, gt_class_id, gt_mask, pred_box, pred_class_id, pred_score, pred_mask,
        iou_threshold=iou_threshold, score_threshold=score_threshold)
    fig = None
    if ax is not None and not isinstance(ax, (list, tuple, np.ndarray)):
        _differences_on_one_axes(image, gt_box, gt_class_id, gt_mask, pred_box, pred_class_id,
                                 pred_score, pred_mask, class_names, title, ax, show_mask, show_box,
                                 gt_match, pred_match, overlaps)
        return gt_match, pred_match, overlaps
    if ax is None:
        fig, ax = plt.subplots(1, 2, figsize=figsize)
    ax_gt, ax_pred = ax
    green, red, orange = (0, 1, 0, 0.8), (1, 0, 0, 1), (1, 0.6, 0, 1)  # matched, false positive, missed
    display_instances(image, gt_box, gt_mask, gt_class_id, class_names, ax=ax_gt,
                      show_bbox=show_box, show_mask=show_mask,
                      colors=[green if m > -1 else orange for m in gt_match],
                      title=(title + " ground truth").strip())
    captions = ["{} {:.3f} / {:.2f}".format(
        class_names[pred_class_id[i]], pred_score[i],
        overlaps[i, int(pred_match[i])] if pred_match[i] > -1 else overlaps[i].max(initial=0))
        for i in range(len(pred_match))]
    display_instances(image, pred_box, pred_mask, pred_class_id, class_names, ax=ax_pred,
                      show_bbox=show_box, show_mask=show_mask, captions=captions,
                      colors=[green if m > -1 else red for m in pred_match],
                      title=(title + " predictions").strip())
    if fig is not None:
        finish_figure(fig, save_path, save_path is None)
    return gt_match, pred_match, overlaps


def _differences_on_one_axes(image, gt_box, gt_class_id, gt_mask, pred_box, pred_class_id,
                             pred_score, pred_mask, class_names, title, ax, show_mask, show_box,
                             gt_match, pred_match, overlaps):
    """matterport's single-axes form: GT (green) and predictions (red), captions "score / IoU"."""
    captions = [""] * len(gt_match) + ["{:.2f} / {:.2f}".format(
        pred_score[i], overlaps[i, int(pred_match[i])] if pred_match[i] > -1 else overlaps[i].max(initial=0))
        for i in range(len(pred_match))]
    display_instances(
        image, np.concatenate([np.reshape(gt_box, (-1, 4)), np.reshape(pred_box, (-1, 4))]),
        np.concatenate([gt_mask, pred_mask], axis=-1), np.concatenate([gt_class_id, pred_class_id]),
        class_names, np.concatenate([np.zeros([len(gt_match)]), pred_score]), ax=ax,
        show_bbox=show_box, show_mask=show_mask, captions=captions,
        colors=[(0, 1, 0, .8)] * len(gt_match) + [(1, 0, 0, 1)] * len(pred_match),
        title=title or "Ground Truth and Detections\n GT=green, pred=red, captions: score/IoU")


def plot_precision_recall(AP, precisions, recalls, save_path=None):
    """Precision-recall curve with the AP in the title."""
    plt = pyplot()
    fig, ax = plt.subplots(1)
    ax.set_title("Precision-Recall Curve. AP@50 = {:.3f}".format(AP))
    ax.set_ylim(0, 1.1)
    ax.set_xlim(0, 1.1)
    ax.plot(recalls, precisions)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    finish_figure(fig, save_path, save_path is None)
    return ax


def draw_boxes(image, boxes=None, refined_boxes=None, masks=None, captions=None, visibilities=None,
               title="", ax=None, figsize=(12, 12), save_path=None):
    """Draw boxes [N, 4] (dashed, grey when refined_boxes are given), refined boxes [N, 4]
    (solid, joined to their box by a line), masks [H, W, N] and captions on an image.
    ``visibilities`` (matterport): per box 0 (grey, dotted, no refined box), 1 (dotted) or
    2 (solid)."""
    from matplotlib import lines, patches
    plt = pyplot()
    N = len(boxes if boxes is not None else refined_boxes)
    fig = None
    if ax is None:
        fig, ax = plt.subplots(1, figsize=figsize)
    colors = random_colors(N)
    ax.set_ylim(image.shape[0] + 15, -15)
    ax.set_xlim(-15, image.shape[1] + 15)
    ax.axis("off")
    ax.set_title(title)
    masked_image = np.array(image, dtype=np.uint32)
    for i in range(N):
        visibility = 1 if visibilities is None else visibilities[i]
        color = colors[i] if visibility else (0.5, 0.5, 0.5)
        if boxes is not None and np.any(boxes[i]):
            y1, x1, y2, x2 = boxes[i][:4]
            style = "dashed" if visibilities is None else ("solid" if visibility == 2 else "dotted")
            ax.add_patch(patches.Rectangle(
                (x1, y1), x2 - x1, y2 - y1, linewidth=2, linestyle=style, facecolor="none",
                alpha=0.5 if visibility == 0 else 1.0,
                edgecolor=(0.5, 0.5, 0.5) if refined_boxes is not None and visibilities is None else color))
        if refined_boxes is not None and visibility > 0 and np.any(refined_boxes[i]):
            ry1, rx1, ry2, rx2 = refined_boxes[i][:4]
            ax.add_patch(patches.Rectangle((rx1, ry1), rx2 - rx1, ry2 - ry1, linewidth=2,
                                           edgecolor=color, facecolor="none"))
            if boxes is not None and visibilities is not None:
                ax.add_line(lines.Line2D([boxes[i][1], rx1], [boxes[i][0], ry1], color=color))
        if masks is not None:
            masked_image = apply_mask(masked_image, masks[:, :, i], color)
        if captions is not None:
            y1, x1 = (refined_boxes if refined_boxes is not None else boxes)[i][:2]
            ax.text(x1, y1, captions[i], size=11, color="w", verticalalignment="top")
    ax.imshow(masked_image.astype(np.uint8))
    if fig is not None:
        finish_figure(fig, save_path, save_path is None)
    return ax
