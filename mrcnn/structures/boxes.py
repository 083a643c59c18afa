"""The one box library, NumPy side: IoU, overlaps, NMS, box deltas, normalisation.

Box format everywhere: (y1, x1, y2, x2) in pixels, y2/x2 exclusive; deltas are
(dy, dx, log(dh), log(dw)). TensorFlow twins: ``mrcnn.structures.boxes_tf``.
``mrcnn.utils`` re-exports these under matterport's names.
"""
import numpy as np


def extract_bboxes(mask):
    """Boxes of instance masks.

    mask: [H, W, N] (bool or 0/1). Returns int32 [N, (y1, x1, y2, x2)] with
    y2/x2 exclusive; an empty mask gives a zero box.
    """
    mask = np.asarray(mask).astype(bool)
    # Reducing over a middle or inner axis of [H, W, N] is ~10x slower in NumPy than over the
    # last axis of an [N, H, W] copy (a hot spot of the input pipeline at 1024 px).
    planes = np.ascontiguousarray(mask.transpose(2, 0, 1))
    rows = planes.any(axis=2).T  # [H, N]
    cols = planes.any(axis=1).T  # [W, N]
    present = rows.any(axis=0)
    y1 = rows.argmax(axis=0)
    y2 = mask.shape[0] - rows[::-1].argmax(axis=0)
    x1 = cols.argmax(axis=0)
    x2 = mask.shape[1] - cols[::-1].argmax(axis=0)
    boxes = np.stack([y1, x1, y2, x2], axis=1).astype(np.int32)
    boxes[~present] = 0
    return boxes.reshape(-1, 4)


def _areas(boxes):
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def compute_iou(box, boxes, box_area, boxes_area):
    """IoU of one box [4] with boxes [N, 4], given their areas. Returns [N]."""
    y1 = np.maximum(box[0], boxes[:, 0])
    y2 = np.minimum(box[2], boxes[:, 2])
    x1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[3], boxes[:, 3])
    intersection = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    union = box_area + boxes_area - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, intersection / np.where(union > 0, union, 1), 0.0)


def compute_overlaps(boxes1, boxes2):
    """IoU matrix float [N1, N2] of boxes1 [N1, 4] and boxes2 [N2, 4]."""
    b1 = np.asarray(boxes1, dtype=np.float64).reshape(-1, 1, 4)
    b2 = np.asarray(boxes2, dtype=np.float64).reshape(1, -1, 4)
    inter_h = np.maximum(np.minimum(b1[..., 2], b2[..., 2]) - np.maximum(b1[..., 0], b2[..., 0]), 0)
    inter_w = np.maximum(np.minimum(b1[..., 3], b2[..., 3]) - np.maximum(b1[..., 1], b2[..., 1]), 0)
    inter = inter_h * inter_w
    union = _areas(b1) + _areas(b2) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def non_max_suppression(boxes, scores, threshold, ties="stable"):
    """Greedy NMS. boxes [N, 4], scores [N]; drops boxes with IoU > threshold
    against a kept higher-scoring box. Returns int32 indices of kept boxes,
    highest score first. ties="stable": equal scores keep input order;
    ties="matterport": matterport's ``scores.argsort()[::-1]`` order."""
    boxes = np.asarray(boxes)
    if boxes.dtype.kind != "f":
        boxes = boxes.astype(np.float32)
    area = _areas(boxes)
    if ties not in ("stable", "matterport"):
        raise ValueError(f"ties must be 'stable' or 'matterport', not {ties!r}")
    scores = np.asarray(scores)
    order = np.argsort(-scores, kind="stable") if ties == "stable" else np.argsort(scores)[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        iou = compute_iou(boxes[i], boxes[order[1:]], area[i], area[order[1:]])
        order = order[1:][iou <= threshold]
    return np.array(keep, dtype=np.int32)


def apply_box_deltas(boxes, deltas):
    """Apply (dy, dx, log(dh), log(dw)) deltas [N, 4] to boxes [N, 4]. float32 [N, 4]."""
    boxes = np.asarray(boxes, dtype=np.float32)
    deltas = np.asarray(deltas, dtype=np.float32)
    height = boxes[:, 2] - boxes[:, 0]
    width = boxes[:, 3] - boxes[:, 1]
    cy = boxes[:, 0] + 0.5 * height + deltas[:, 0] * height
    cx = boxes[:, 1] + 0.5 * width + deltas[:, 1] * width
    height = height * np.exp(deltas[:, 2])
    width = width * np.exp(deltas[:, 3])
    y1 = cy - 0.5 * height
    x1 = cx - 0.5 * width
    return np.stack([y1, x1, y1 + height, x1 + width], axis=1)


def box_refinement(box, gt_box):
    """Deltas float32 [N, (dy, dx, log(dh), log(dw))] that turn box [N, 4] into gt_box [N, 4]."""
    box = np.asarray(box, dtype=np.float32)
    gt_box = np.asarray(gt_box, dtype=np.float32)
    h, w = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
    gh, gw = gt_box[:, 2] - gt_box[:, 0], gt_box[:, 3] - gt_box[:, 1]
    dy = (gt_box[:, 0] + 0.5 * gh - box[:, 0] - 0.5 * h) / h
    dx = (gt_box[:, 1] + 0.5 * gw - box[:, 1] - 0.5 * w) / w
    return np.stack([dy, dx, np.log(gh / h), np.log(gw / w)], axis=1)


def norm_boxes(boxes, shape):
    """Pixel boxes -> normalised float32: (box - [0, 0, 1, 1]) / ([h, w, h, w] - 1)."""
    h, w = shape[:2]
    scale = np.array([h - 1, w - 1, h - 1, w - 1], dtype=np.float64)
    return ((np.asarray(boxes, dtype=np.float64) - [0, 0, 1, 1]) / scale).astype(np.float32)


def denorm_boxes(boxes, shape):
    """Normalised boxes -> int32 pixel boxes (inverse of norm_boxes, rounded)."""
    h, w = shape[:2]
    scale = np.array([h - 1, w - 1, h - 1, w - 1], dtype=np.float64)
    return np.around(np.asarray(boxes, dtype=np.float64) * scale + [0, 0, 1, 1]).astype(np.int32)
