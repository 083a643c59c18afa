"""The one box library, TensorFlow side: IoU, delta encode/decode, clipping.

Box format everywhere: (y1, x1, y2, x2), area = h * w (no +1). In the graph boxes are
normalised to [0, 1] with the matterport convention
``norm = (pixel - [0, 0, 1, 1]) / ([h, w, h, w] - 1)``, so a pixel box whose y2/x2 are
exclusive maps to a normalised box whose far corner is the last covered pixel centre.
Deltas are (dy, dx, log dh, log dw) in the centre/size parametrisation, without a +1.
Every TensorFlow IoU and delta in the model goes through here; the NumPy twins are
``mrcnn.structures.boxes`` (re-exported by ``mrcnn.utils``) and the tests compare the two.
"""
from __future__ import annotations

import tensorflow as tf


def norm_boxes(boxes, shapes):
    """Pixel boxes [B, 4] of images of size ``shapes`` [B, (h, w)] -> normalised boxes [B, 4]:
    (box - [0, 0, 1, 1]) / ([h, w, h, w] - 1), the TensorFlow twin of ``boxes.norm_boxes``."""
    h, w = shapes[:, 0] - 1.0, shapes[:, 1] - 1.0
    return (boxes - tf.constant([0.0, 0.0, 1.0, 1.0])) / tf.stack([h, w, h, w], axis=1)


def box_area(boxes):
    """[..., 4] -> [...] area (no +1)."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def iou_matrix(boxes1, boxes2):
    """IoU of every pair. boxes1 [N, 4], boxes2 [M, 4] -> [N, M] float32.

    Zero-area boxes (padding) get IoU 0 against everything rather than NaN.
    """
    b1 = tf.expand_dims(boxes1, 1)
    b2 = tf.expand_dims(boxes2, 0)
    y1 = tf.maximum(b1[..., 0], b2[..., 0])
    x1 = tf.maximum(b1[..., 1], b2[..., 1])
    y2 = tf.minimum(b1[..., 2], b2[..., 2])
    x2 = tf.minimum(b1[..., 3], b2[..., 3])
    inter = tf.maximum(y2 - y1, 0.0) * tf.maximum(x2 - x1, 0.0)
    union = box_area(b1) + box_area(b2) - inter
    return tf.math.divide_no_nan(inter, union)


def encode_deltas(boxes, gt_boxes, std_dev=None):
    """Deltas that turn ``boxes`` into ``gt_boxes``. [N, 4], [N, 4] -> [N, 4].

    Divided by ``std_dev`` (e.g. BBOX_STD_DEV) when given.
    """
    boxes = tf.cast(boxes, tf.float32)
    gt_boxes = tf.cast(gt_boxes, tf.float32)
    h = boxes[:, 2] - boxes[:, 0]
    w = boxes[:, 3] - boxes[:, 1]
    cy = boxes[:, 0] + 0.5 * h
    cx = boxes[:, 1] + 0.5 * w
    gh = gt_boxes[:, 2] - gt_boxes[:, 0]
    gw = gt_boxes[:, 3] - gt_boxes[:, 1]
    gcy = gt_boxes[:, 0] + 0.5 * gh
    gcx = gt_boxes[:, 1] + 0.5 * gw
    deltas = tf.stack([(gcy - cy) / h, (gcx - cx) / w,
                       tf.math.log(gh / h), tf.math.log(gw / w)], axis=1)
    if std_dev is not None:
        deltas = deltas / tf.constant(std_dev, tf.float32)
    return deltas


def decode_deltas(boxes, deltas, std_dev=None):
    """Apply deltas to boxes. [..., 4], [..., 4] -> [..., 4].

    ``deltas`` are multiplied by ``std_dev`` first when given (the inverse of encode).
    """
    if std_dev is not None:
        deltas = deltas * tf.constant(std_dev, tf.float32)
    h = boxes[..., 2] - boxes[..., 0]
    w = boxes[..., 3] - boxes[..., 1]
    cy = boxes[..., 0] + 0.5 * h + deltas[..., 0] * h
    cx = boxes[..., 1] + 0.5 * w + deltas[..., 1] * w
    h = h * tf.exp(deltas[..., 2])
    w = w * tf.exp(deltas[..., 3])
    y1 = cy - 0.5 * h
    x1 = cx - 0.5 * w
    return tf.stack([y1, x1, y1 + h, x1 + w], axis=-1)


def clip_boxes(boxes, window):
    """Clip boxes [..., N, 4] to a window (wy1, wx1, wy2, wx2).

    ``window`` is [4] (one window for all) or [B, 4] against boxes [B, N, 4].
    """
    window = tf.cast(window, boxes.dtype)
    if len(window.shape) > 1:
        window = tf.expand_dims(window, -2)
    lo = tf.stack([window[..., 0], window[..., 1], window[..., 0], window[..., 1]], axis=-1)
    hi = tf.stack([window[..., 2], window[..., 3], window[..., 2], window[..., 3]], axis=-1)
    return tf.minimum(tf.maximum(boxes, lo), hi)


def boxes_in_frame(boxes, frames):
    """Boxes [K, 4] expressed in the frame of ``frames`` [K, 4]: (box - frame origin) / frame size.

    Maps each box into its frame's unit square (e.g. an ROI into its GT box's mini-mask);
    a zero-size frame gives 0 instead of inf/NaN.
    """
    fh = frames[:, 2] - frames[:, 0]
    fw = frames[:, 3] - frames[:, 1]
    return tf.stack([tf.math.divide_no_nan(boxes[:, 0] - frames[:, 0], fh),
                     tf.math.divide_no_nan(boxes[:, 1] - frames[:, 1], fw),
                     tf.math.divide_no_nan(boxes[:, 2] - frames[:, 0], fh),
                     tf.math.divide_no_nan(boxes[:, 3] - frames[:, 1], fw)], axis=1)


def trim_zero_rows(boxes):
    """Drop all-zero rows (padding). [N, 4] -> ([K, 4], bool [N])."""
    keep = tf.reduce_any(tf.not_equal(boxes, 0.0), axis=1)
    return tf.boolean_mask(boxes, keep), keep
