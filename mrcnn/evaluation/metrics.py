"""Per-image detection metrics with matterport ``mrcnn.utils`` semantics (NumPy only).

``mrcnn.utils`` re-exports every public name here, so user code such as
``utils.compute_ap(...)`` keeps working. These are *per-image* VOC-style numbers;
the mean of ``compute_ap`` over images is what matterport users call "mAP". It is
not COCO mAP: see :mod:`mrcnn.evaluation.coco` for that.

Conventions: boxes are (y1, x1, y2, x2) pixels with y2/x2 exclusive; masks are
[H, W, N] (bool or 0/1, values > 0.5 count as foreground).

Deliberate, documented departures from matterport (2019):
* Empty inputs never crash. ``compute_ap`` returns exactly matterport's arithmetic:
  GT present + no predictions -> 0.0; no GT + no predictions -> 0.0; no GT +
  predictions -> nan (recall is 0/0; matterport also gave nan, plus a warning).
* Two empty masks have IoU 0 (matterport: 0/0 = nan, which then *matched*,
  because ``nan < threshold`` is False).
* Rows whose box is all zeros are padding and are dropped from boxes, masks,
  class ids and scores alike (matterport trimmed boxes but kept the first N
  masks, which misaligned them when padding was not trailing).
* Tie order is matterport's by default (``ties="matterport"``): predictions ranked by
  ``np.argsort(scores)[::-1]`` and, per prediction, GTs by ``np.argsort(ious)[::-1]``, so
  AP equals matterport's on tied scores too (a stable order can differ there).
  NumPy's default sort leaves the order of equal values to its algorithm (reversed input
  order for up to 16 values); ``ties="stable"`` keeps equal values in input order instead.
* Recalls are float64 (matterport: float32); differences are below 1e-7.
"""
import math

import numpy as np

from mrcnn.structures.boxes import compute_overlaps

__all__ = [
    "trim_zeros",
    "compute_overlaps_masks",
    "compute_matches",
    "compute_matches_from_overlaps",
    "compute_ap",
    "compute_ap_from_overlaps",
    "compute_ap_range",
    "compute_recall",
]


def trim_zeros(x):
    """Drop rows that are all zeros (padding). x: [N, C] -> [N', C]."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"trim_zeros expects a 2-D array [N, C], got shape {x.shape}")
    return x[~np.all(x == 0, axis=1)]


def _nonzero_rows(boxes):
    """bool [N]: True for rows of ``boxes`` [N, 4] that are not all-zero padding."""
    boxes = np.asarray(boxes).reshape(-1, 4)
    return ~np.all(boxes == 0, axis=1)


def compute_overlaps_masks(masks1, masks2):
    """Mask IoU. masks1 [H, W, N1], masks2 [H, W, N2] -> float64 [N1, N2].

    Either side empty -> zeros of shape [N1, N2]. A pair whose union is empty
    (both masks empty) has IoU 0.
    """
    masks1, masks2 = np.asarray(masks1), np.asarray(masks2)
    n1, n2 = masks1.shape[-1], masks2.shape[-1]
    if n1 == 0 or n2 == 0:
        return np.zeros((n1, n2), dtype=np.float64)
    if masks1.shape[:-1] != masks2.shape[:-1]:
        raise ValueError(f"mask sizes differ: {masks1.shape[:-1]} vs {masks2.shape[:-1]}; "
                         "resize both to the image size before comparing")
    # float32 matmul is exact for pixel counts below 2**24 (4096x4096 images).
    m1 = (masks1 > 0.5).reshape(-1, n1).astype(np.float32)
    m2 = (masks2 > 0.5).reshape(-1, n2).astype(np.float32)
    area1 = m1.sum(axis=0, dtype=np.float64)
    area2 = m2.sum(axis=0, dtype=np.float64)
    inter = (m1.T @ m2).astype(np.float64)
    union = area1[:, None] + area2[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _greedy_match(overlaps, gt_orders, gt_class_ids, pred_class_ids, iou_threshold, score_threshold):
    """Matterport's greedy matching on Python lists (fast for per-image sizes).

    overlaps: list of rows (predictions already in descending-score order); gt_orders: per
    row, the GT indices by descending IoU. Returns (gt_match, pred_match) lists of matched
    indices or -1.
    """
    gt_match = [-1] * len(gt_class_ids)
    pred_match = [-1] * len(pred_class_ids)
    for i, (row, order) in enumerate(zip(overlaps, gt_orders)):
        for j in order:
            iou = row[j]
            if iou < score_threshold or iou < iou_threshold:
                break
            if gt_match[j] > -1:
                continue
            if pred_class_ids[i] == gt_class_ids[j]:
                gt_match[j] = i
                pred_match[i] = j
                break
    return gt_match, pred_match


def _descending(values, ties, axis=-1):
    """Indices of ``values`` (1-D, or 2-D sorted per row) by descending value.

    ties="matterport": ``np.argsort(values)[::-1]``, matterport's order (equal values come in
    the reverse of NumPy's default sort). ties="stable": equal values keep input order.
    """
    values = np.asarray(values)
    if ties == "matterport":
        return np.flip(np.argsort(values, axis=axis), axis=axis)
    if ties == "stable":
        return np.argsort(-values, axis=axis, kind="stable")
    raise ValueError(f"ties must be 'matterport' or 'stable', not {ties!r}")


def _as_list(x, dtype=None):
    """Python list of a 1-D sequence (lists pass through: the evaluator's fast path)."""
    return x if isinstance(x, list) else np.asarray(x, dtype=dtype).reshape(-1).tolist()


def _match_lists(overlaps, gt_class_ids, pred_class_ids, pred_scores,
                 iou_threshold, score_threshold, ties="matterport"):
    """Shared core: (gt_match list, pred_match list, overlaps rows sorted by score)."""
    gt_ids, pred_ids = _as_list(gt_class_ids), _as_list(pred_class_ids)
    # Sorted in the scores' own dtype, as matterport's argsort saw them.
    order = _descending(np.asarray(pred_scores).reshape(-1), ties).tolist()
    rows = np.asarray(overlaps, dtype=np.float64).reshape(len(order), len(gt_ids))[order]
    gt_orders = _descending(rows, ties, axis=1).tolist() if len(gt_ids) else [[]] * len(order)
    rows = rows.tolist()
    gt_match, pred_match = _greedy_match(rows, gt_orders, gt_ids, [pred_ids[k] for k in order],
                                         iou_threshold, score_threshold)
    return gt_match, pred_match, rows


def compute_matches_from_overlaps(overlaps, gt_class_ids, pred_class_ids, pred_scores,
                                  iou_threshold=0.5, score_threshold=0.0, ties="matterport"):
    """Greedy matterport matching given IoUs in *input* order.

    overlaps: [N_pred, N_gt] IoU of each prediction with each GT.
    Returns (gt_match [N_gt], pred_match [N_pred], overlaps [N_pred, N_gt]), where
    predictions (and the rows of ``overlaps``) are sorted by descending score and
    each match entry (float, as matterport) holds the matched index on the other
    side or -1.

    Quirk kept from matterport: per prediction the GTs are visited by descending
    IoU; a GT of another class is skipped (not a stop), the walk stops at the
    first IoU below ``iou_threshold``; IoUs below ``score_threshold`` are ignored.
    ``ties``: see the module docstring.
    """
    gt_match, pred_match, rows = _match_lists(
        overlaps, gt_class_ids, pred_class_ids, pred_scores, iou_threshold, score_threshold, ties)
    return (np.array(gt_match, dtype=np.float64), np.array(pred_match, dtype=np.float64),
            np.array(rows, dtype=np.float64).reshape(len(pred_match), len(gt_match)))


def _select(boxes, class_ids, masks, scores=None):
    """Drop all-zero padding rows consistently from boxes/ids/masks(/scores)."""
    keep = _nonzero_rows(boxes)
    boxes = np.asarray(boxes).reshape(-1, 4)[keep]
    class_ids = np.asarray(class_ids).reshape(-1)[keep]
    masks = np.asarray(masks)[..., keep]
    if scores is None:
        return boxes, class_ids, masks
    return boxes, class_ids, masks, np.asarray(scores).reshape(-1)[keep]


def compute_matches(gt_boxes, gt_class_ids, gt_masks,
                    pred_boxes, pred_class_ids, pred_scores, pred_masks,
                    iou_threshold=0.5, score_threshold=0.0, ties="matterport"):
    """Match one image's predictions to its GT by mask IoU (matterport semantics).

    gt_boxes [N, 4], gt_class_ids [N], gt_masks [H, W, N]; pred_boxes [M, 4],
    pred_class_ids [M], pred_scores [M], pred_masks [H, W, M].
    Returns (gt_match [N'], pred_match [M'], overlaps [M', N']) after dropping
    all-zero padding rows; predictions are in descending-score order.
    """
    _, gt_class_ids, gt_masks = _select(gt_boxes, gt_class_ids, gt_masks)
    _, pred_class_ids, pred_masks, pred_scores = _select(
        pred_boxes, pred_class_ids, pred_masks, pred_scores)
    overlaps = compute_overlaps_masks(pred_masks, gt_masks)
    return compute_matches_from_overlaps(overlaps, gt_class_ids, pred_class_ids, pred_scores,
                                         iou_threshold, score_threshold, ties)


def _ap_from_matches(gt_match, pred_match):
    """All-point VOC interpolation, as matterport. Returns (ap, precisions, recalls).

    Plain Python on purpose: per-image lists are short and this runs per image
    in the evaluator, where NumPy call overhead would dominate.
    """
    n_gt = len(gt_match)
    precisions, recalls, hits = [0.0], [0.0], 0
    for k, m in enumerate(pred_match, start=1):
        hits += m > -1
        precisions.append(hits / k)
        # No GT: 0/0 = nan, which is matterport's value (without its warning).
        recalls.append(hits / n_gt if n_gt else math.nan)
    precisions.append(0.0)
    recalls.append(1.0)
    for k in range(len(precisions) - 2, -1, -1):  # precision envelope, from the right
        if precisions[k + 1] > precisions[k]:
            precisions[k] = precisions[k + 1]
    ap = 0.0
    for k in range(1, len(recalls)):
        if recalls[k] != recalls[k - 1]:  # nan != x is True, so nan propagates
            ap += (recalls[k] - recalls[k - 1]) * precisions[k]
    return ap, np.array(precisions), np.array(recalls)


def compute_ap_from_overlaps(overlaps, gt_class_ids, pred_class_ids, pred_scores,
                             iou_threshold=0.5, ties="matterport"):
    """``compute_ap`` given precomputed IoUs [N_pred, N_gt] in input order.

    Used by the evaluator, which gets IoUs from RLEs instead of dense masks.
    Returns (ap, precisions, recalls, overlaps) exactly as ``compute_ap``.
    """
    gt_match, pred_match, rows = _match_lists(
        overlaps, gt_class_ids, pred_class_ids, pred_scores, iou_threshold, 0.0, ties)
    ap, precisions, recalls = _ap_from_matches(gt_match, pred_match)
    return ap, precisions, recalls, np.array(rows, dtype=np.float64).reshape(
        len(pred_match), len(gt_match))


def compute_ap(gt_boxes, gt_class_ids, gt_masks,
               pred_boxes, pred_class_ids, pred_scores, pred_masks,
               iou_threshold=0.5, ties="matterport"):
    """Per-image average precision at one mask-IoU threshold (matterport).

    Returns (ap float, precisions [M'+2], recalls [M'+2], overlaps [M', N']).
    See the module docstring for the values returned on empty inputs and for ``ties``.
    """
    gt_match, pred_match, overlaps = compute_matches(
        gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids, pred_scores, pred_masks,
        iou_threshold, ties=ties)
    ap, precisions, recalls = _ap_from_matches(gt_match.tolist(), pred_match.tolist())
    return ap, precisions, recalls, overlaps


def compute_ap_range(gt_box, gt_class_id, gt_mask,
                     pred_box, pred_class_id, pred_score, pred_mask,
                     iou_thresholds=None, verbose=1, ties="matterport"):
    """Mean of ``compute_ap`` over IoU thresholds (default 0.5:0.95:0.05). Returns float."""
    if iou_thresholds is None:
        iou_thresholds = np.arange(0.5, 1.0, 0.05)
    iou_thresholds = np.asarray(iou_thresholds, dtype=np.float64).reshape(-1)
    if iou_thresholds.size == 0:
        raise ValueError("iou_thresholds is empty; pass at least one threshold")
    aps = []
    for t in iou_thresholds:
        ap = compute_ap(gt_box, gt_class_id, gt_mask, pred_box, pred_class_id, pred_score,
                        pred_mask, iou_threshold=t, ties=ties)[0]
        if verbose:
            print(f"AP @{t:.2f}:\t {ap:.3f}")
        aps.append(ap)
    mean_ap = float(np.mean(aps))
    if verbose:
        print(f"AP @{iou_thresholds[0]:.2f}-{iou_thresholds[-1]:.2f}:\t {mean_ap:.3f}")
    return mean_ap


def compute_recall(pred_boxes, gt_boxes, iou):
    """Fraction of GT boxes that are the best match of some prediction with IoU >= iou.

    pred_boxes [M, 4], gt_boxes [N, 4]. Returns (recall float, positive_ids int64 [K]):
    the indices of predictions whose best IoU reaches ``iou``.
    Empty inputs: no GT -> (nan, []) (0/0, as matterport's arithmetic; it crashed
    instead); GT but no predictions -> (0.0, []). Ties in IoU go to the first GT
    (``argmax``), as in matterport.
    """
    gt = np.asarray(gt_boxes).reshape(-1, 4)
    pred = np.asarray(pred_boxes).reshape(-1, 4)
    if len(gt) == 0:
        return float("nan"), np.zeros(0, dtype=np.int64)
    if len(pred) == 0:
        return 0.0, np.zeros(0, dtype=np.int64)
    overlaps = compute_overlaps(pred, gt)   # float64
    iou_max = overlaps.max(axis=1)
    iou_argmax = overlaps.argmax(axis=1)
    positive_ids = np.where(iou_max >= iou)[0]
    recall = len(set(iou_argmax[positive_ids].tolist())) / len(gt)
    return float(recall), positive_ids
