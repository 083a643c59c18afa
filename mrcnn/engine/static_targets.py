"""Second-stage training targets with static shapes, so that XLA can compile them.

Same rules as ``mrcnn.engine.proposal_targets.detection_targets`` (matterport's sampling, GT boxes
appended, crowds, the positive ratio, mini-mask crops), built from masks, ``argsort`` of random
keys and gathers instead of ``boolean_mask``/``where`` and slices of data-dependent length. The
random draw differs from the dynamic version's (keys are drawn for every row, not only for the
candidates), so the two pick different subsets when there are more candidates than slots; the
targets of any given ROI are the same. Not wired into training yet (see BENCHMARKS.md, XLA).
"""
from __future__ import annotations

import tensorflow as tf

from mrcnn.structures import boxes_tf as box_ops
from mrcnn.engine.proposal_targets import CROWD_IOU, POSITIVE_IOU, _as_seed, mask_crop_boxes
from mrcnn.modeling.roi_align_gather import crop_and_resize


def _keys(n, seed, salt):
    """Random keys float32 [n] in [0, 1) from (seed, salt): an integer hash of the row index.

    Not ``tf.random.stateless_uniform``: XLA's stateless generators draw other numbers than
    TensorFlow's kernels, and the compiled step must sample the same ROIs as the uncompiled one.
    Integer arithmetic (int64, wrapped to 32 bits) is the same on both.
    """
    if seed is None:
        return tf.random.uniform([n])
    s = _as_seed(seed)
    mask = tf.constant(0xFFFFFFFF, tf.int64)
    x = (tf.range(n, dtype=tf.int64) * 0x9E3779B1 + s[0] * 0x85EBCA77 + s[1] * 0xC2B2AE3D
         + int(salt) * 0x27D4EB2F) & mask
    for shift, mult in ((15, 0x2C1B3C6D), (12, 0x297A2D39), (15, 0x7FEB352D)):
        x = ((x ^ tf.bitwise.right_shift(x, shift)) * mult) & mask
    x = x ^ tf.bitwise.right_shift(x, 16)
    return tf.cast(tf.bitwise.right_shift(x, 8), tf.float32) / float(1 << 24)


def seed_plus(seed, k):
    """int64 [2] seed for stream ``k`` of ``seed`` (the same with and without XLA)."""
    return _as_seed(seed) + tf.stack([tf.constant(0, tf.int64), tf.cast(k, tf.int64) * 1000003])


def _sample(candidate, count, seed, salt):
    """Random order of the rows where ``candidate`` [M] is true: indices int32 [M] (candidates
    first) and how many to take, min(count, #candidates)."""
    keys = tf.where(candidate, _keys(tf.size(candidate), seed, salt), 2.0)
    order = tf.argsort(keys, stable=True)
    return order, tf.minimum(count, tf.reduce_sum(tf.cast(candidate, tf.int32)))


def detection_targets_static(proposals, gt_class_ids, gt_boxes, gt_masks, spec, seed=None):
    """One image; inputs and outputs as ``proposal_targets.detection_targets`` (static shapes:
    proposals [N, 4], gt_class_ids [G], gt_boxes [G, 4], gt_masks [mh, mw, G]; spec a
    ``proposal_targets.TargetSpec``).

    Returns rois [T, 4], roi_class_ids int32 [T], roi_deltas [T, 4], mask_targets [P, Mh, Mw],
    num_positive int32 scalar.
    """
    T, P = spec.sizes
    proposals = tf.stop_gradient(tf.cast(tf.reshape(proposals, [-1, 4]), tf.float32))
    gt_boxes = tf.cast(tf.reshape(gt_boxes, [-1, 4]), tf.float32)
    gt_class_ids = tf.cast(tf.reshape(gt_class_ids, [-1]), tf.int32)
    gt_valid = tf.reduce_any(tf.not_equal(gt_boxes, 0.0), axis=1) & tf.not_equal(gt_class_ids, 0)
    gt_ok, crowd = gt_valid & (gt_class_ids > 0), gt_valid & (gt_class_ids < 0)
    proposals, row_valid = _rows(proposals, gt_boxes, gt_ok, spec)

    iou = box_ops.iou_matrix(proposals, gt_boxes)                                  # [M, G]
    overlaps = tf.where(gt_ok[None, :], iou, 0.0)
    roi_iou_max = tf.reduce_max(overlaps, axis=1)
    crowd_max = tf.reduce_max(tf.where(crowd[None, :], iou, 0.0), axis=1)
    positive = row_valid & (roi_iou_max >= POSITIVE_IOU)
    negative = row_valid & (roi_iou_max < POSITIVE_IOU) & (crowd_max < CROWD_IOU)

    pos_order, n_pos = _sample(positive, P, seed, 1)
    n_neg = tf.cast(tf.cast(n_pos, tf.float64) / spec.positive_ratio + 1e-6, tf.int32) - n_pos
    n_neg = tf.where(n_pos > 0, tf.minimum(n_neg, T - n_pos), T)
    neg_order, n_neg = _sample(negative, n_neg, seed, 2)

    rows = tf.range(T)
    is_pos, is_neg = rows < n_pos, (rows >= n_pos) & (rows < n_pos + n_neg)
    source = tf.where(is_pos, tf.gather(pos_order, tf.minimum(rows, P - 1)),
                      tf.gather(neg_order, tf.clip_by_value(rows - n_pos, 0, tf.size(neg_order) - 1)))
    rois = tf.where((is_pos | is_neg)[:, None], tf.gather(proposals, source), 0.0)

    pos_rois = rois[:P]
    pos_live = rows[:P] < n_pos
    assignment = tf.argmax(tf.gather(overlaps, pos_order[:P]), axis=1, output_type=tf.int32)
    roi_gt_boxes = tf.gather(gt_boxes, assignment)
    class_ids = tf.where(pos_live, tf.gather(gt_class_ids, assignment), 0)
    deltas = tf.where(pos_live[:, None], box_ops.encode_deltas(pos_rois, roi_gt_boxes, spec.bbox_std_dev), 0.0)
    masks = _mask_targets(pos_rois, roi_gt_boxes, assignment, tf.cast(gt_masks, tf.float32),
                          spec.use_mini_mask, spec.mask_shape)
    masks = tf.where(pos_live[:, None, None], masks, 0.0)
    return (tf.stop_gradient(rois), tf.pad(class_ids, [[0, T - P]]),
            tf.pad(deltas, [[0, T - P], [0, 0]]), masks, n_pos)


def _rows(proposals, gt_boxes, gt_ok, spec):
    """Candidate ROI rows [M, 4] (the GT boxes appended with spec.include_gt, zero padded to at
    least T rows so every gather stays in range) and bool [M]: which rows are real."""
    row_valid = tf.reduce_any(tf.not_equal(proposals, 0.0), axis=1)
    if spec.include_gt:
        proposals = tf.concat([proposals, gt_boxes], axis=0)
        row_valid = tf.concat([row_valid, gt_ok], axis=0)
    short = spec.rois_per_image - int(proposals.shape[0])
    if short > 0:
        proposals = tf.pad(proposals, [[0, short], [0, 0]])
        row_valid = tf.pad(row_valid, [[0, short]])
    return proposals, row_valid


def _mask_targets(rois, roi_gt_boxes, assignment, gt_masks, use_mini_mask, shape):
    """Crops [P, Mh, Mw] in {0, 1} of each ROI's GT mask (as detection_targets does)."""
    roi_masks = tf.gather(tf.transpose(gt_masks, [2, 0, 1])[..., None], assignment)
    boxes, roi_masks = mask_crop_boxes(rois, roi_gt_boxes, gt_masks, roi_masks, use_mini_mask)
    masks = crop_and_resize(roi_masks, boxes, tf.range(tf.shape(rois)[0]), shape)
    return tf.round(tf.squeeze(masks, axis=3))
