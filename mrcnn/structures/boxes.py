"""The one box library, NumPy side: IoU, overlaps, NMS, box deltas, normalisation.

Box format everywhere: (y1, x1, y2, x2) in pixels, y2/x2 exclusive, area = h * w (no +1);
deltas are (dy, dx, log(dh), log(dw)) of centre and size. Every NumPy box IoU in the
project goes through ``iou_from_corners`` and every delta through ``box_refinement`` /
``apply_box_deltas``. TensorFlow twins: ``mrcnn.structures.boxes_tf``.
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


def box_area(boxes):
    """Areas [...] of boxes [..., 4] (h * w, no +1)."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def corners(boxes):
    """(y1, x1, y2, x2) columns of boxes [..., 4] (views, no copy)."""
    return boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]


def iou_from_corners(a, b, area_a, area_b):
    """The IoU kernel: intersection over union of boxes a and b, elementwise.

    a, b: (y1, x1, y2, x2) tuples of arrays that broadcast against each other (so one box
    against many, an outer [N1, 1] x [1, N2] grid, or gathered pairs); area_a, area_b their
    areas. Computed in the inputs' dtype (ints give float64); IoU 0 where the union is empty.
    """
    ih = np.minimum(a[2], b[2]) - np.maximum(a[0], b[0])
    iw = np.minimum(a[3], b[3]) - np.maximum(a[1], b[1])
    inter = np.maximum(ih, 0) * np.maximum(iw, 0)
    union = area_a + area_b - inter
    # Divide everywhere, then zero the empty unions: ~3x faster than a masked divide, and
    # this runs on ~10^5 anchor pairs per training image.
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.asarray(inter / union)
    empty = ~(union > 0)
    if empty.any():
        iou[np.broadcast_to(empty, iou.shape)] = 0.0
    return iou


def compute_iou(box, boxes, box_area, boxes_area):
    """IoU of one box [4] with boxes [N, 4], given their areas. Returns [N] in their dtype."""
    return iou_from_corners(corners(np.asarray(box)), corners(np.asarray(boxes)), box_area, boxes_area)


def compute_overlaps(boxes1, boxes2, dtype=np.float64):
    """IoU matrix [N1, N2] of boxes1 [N1, 4] and boxes2 [N2, 4], computed in ``dtype``."""
    b1 = np.asarray(boxes1, dtype=dtype).reshape(-1, 1, 4)
    b2 = np.asarray(boxes2, dtype=dtype).reshape(1, -1, 4)
    return iou_from_corners(corners(b1), corners(b2), box_area(b1), box_area(b2))


def non_max_suppression(boxes, scores, threshold, ties="stable"):
    """Greedy NMS. boxes [N, 4], scores [N]; drops boxes with IoU > threshold
    against a kept higher-scoring box. Returns int32 indices of kept boxes,
    highest score first. ties="stable": equal scores keep input order;
    ties="matterport": matterport's ``scores.argsort()[::-1]`` order."""
    boxes = np.asarray(boxes)
    if boxes.dtype.kind != "f":
        boxes = boxes.astype(np.float32)
    area = box_area(boxes)
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


def apply_box_deltas(boxes, deltas, std_dev=None, dtype=np.float32):
    """Apply (dy, dx, log(dh), log(dw)) deltas [N, 4] to boxes [N, 4]. Returns [N, 4] in ``dtype``.

    ``deltas`` are multiplied by ``std_dev`` [4] first when given (the inverse of box_refinement).
    """
    boxes = np.asarray(boxes, dtype=dtype)
    deltas = np.asarray(deltas, dtype=dtype)
    if std_dev is not None:
        deltas = deltas * np.asarray(std_dev, dtype=dtype)
    height = boxes[:, 2] - boxes[:, 0]
    width = boxes[:, 3] - boxes[:, 1]
    cy = boxes[:, 0] + 0.5 * height + deltas[:, 0] * height
    cx = boxes[:, 1] + 0.5 * width + deltas[:, 1] * width
    height = height * np.exp(deltas[:, 2])
    width = width * np.exp(deltas[:, 3])
    y1 = cy - 0.5 * height
    x1 = cx - 0.5 * width
    return np.stack([y1, x1, y1 + height, x1 + width], axis=1)


def box_refinement(box, gt_box, std_dev=None, dtype=np.float32):
    """Deltas [N, (dy, dx, log(dh), log(dw))] that turn box [N, 4] into gt_box [N, 4].

    Computed in ``dtype`` (matterport: float32; the RPN targets use float64), centre
    differences as matterport; divided by ``std_dev`` [4] when given.
    """
    box = np.asarray(box, dtype=dtype)
    gt_box = np.asarray(gt_box, dtype=dtype)
    h, w = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
    gh, gw = gt_box[:, 2] - gt_box[:, 0], gt_box[:, 3] - gt_box[:, 1]
    cy, cx = box[:, 0] + 0.5 * h, box[:, 1] + 0.5 * w
    gcy, gcx = gt_box[:, 0] + 0.5 * gh, gt_box[:, 1] + 0.5 * gw
    deltas = np.stack([(gcy - cy) / h, (gcx - cx) / w, np.log(gh / h), np.log(gw / w)], axis=1)
    if std_dev is not None:
        deltas = deltas / np.asarray(std_dev, dtype=dtype)
    return deltas


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
