"""Second-stage training targets (matterport's ``detection_targets_graph``), in TensorFlow.

Boxes are (y1, x1, y2, x2) in normalised coordinates (matterport's
``(pixel - [0, 0, 1, 1]) / ([h, w, h, w] - 1)``); all-zero rows are padding.

Two deliberate changes from matterport:
- ``ROI_INCLUDE_GT`` (default False, as matterport; configs/*.toml set it): the GT boxes
  are appended to the proposals (as torchvision / Detectron2 do), so positives exist from
  the first step.
- With no positive ROI at all, the ROIs are filled with negatives up to
  TRAIN_ROIS_PER_IMAGE (matterport's ratio rule would give zero ROIs).
"""
from typing import NamedTuple

import tensorflow as tf

from mrcnn.structures import boxes_tf as box_ops

POSITIVE_IOU = 0.5   # ROI IoU >= this with a GT: positive; below: negative
CROWD_IOU = 0.001    # ROIs overlapping a crowd box this much are never negatives


class TargetSpec(NamedTuple):
    """The values the second-stage targets need; ``from_config`` reads them at the boundary."""
    rois_per_image: int        # T: TRAIN_ROIS_PER_IMAGE
    positive_ratio: float      # ROI_POSITIVE_RATIO
    mask_shape: tuple          # (Mh, Mw): MASK_SHAPE
    bbox_std_dev: tuple        # [4] divisor of the deltas: BBOX_STD_DEV
    use_mini_mask: bool        # gt_masks are mini-masks in their boxes' frames: USE_MINI_MASK
    include_gt: bool = False   # append the GT boxes to the proposals: ROI_INCLUDE_GT

    @classmethod
    def from_config(cls, config):
        return cls(int(config.TRAIN_ROIS_PER_IMAGE), float(config.ROI_POSITIVE_RATIO),
                   tuple(int(v) for v in config.MASK_SHAPE), tuple(float(v) for v in config.BBOX_STD_DEV),
                   bool(config.USE_MINI_MASK), bool(getattr(config, "ROI_INCLUDE_GT", False)))

    @property
    def sizes(self):
        return target_sizes(self.rois_per_image, self.positive_ratio)


def target_sizes(rois_per_image, positive_ratio):
    """(T, P): ROIs per image and the maximum number of positives (mask target rows)."""
    t = int(rois_per_image)
    # The epsilon keeps 200 * 0.33 = 65.99999... from flooring to 65.
    return t, int(t * float(positive_ratio) + 1e-6)


def _as_seed(seed):
    """int or int [1|2] -> int64 [2] stateless seed."""
    s = tf.cast(tf.reshape(seed, [-1]), tf.int64)
    return tf.concat([s, tf.zeros([2], tf.int64)], 0)[:2]


def _shuffle(x, seed, salt):
    """Random permutation of a 1-D tensor; stateless (reproducible) when seed is given."""
    if seed is None:
        return tf.random.shuffle(x)
    s = tf.random.experimental.stateless_fold_in(_as_seed(seed), salt)
    keys = tf.random.stateless_uniform(tf.shape(x), seed=s)
    return tf.gather(x, tf.argsort(keys))


def mask_crop_boxes(rois, roi_gt_boxes, gt_masks, roi_masks, use_mini_mask):
    """Crop boxes [K, 4] and the masks [K, mh(+2), mw(+2), 1] to crop them from.

    rois, roi_gt_boxes: [K, 4] normalised; roi_masks [K, mh, mw, 1]: each ROI's GT mask;
    gt_masks [mh, mw, G] gives the mask size. Full-image masks crop at the ROI itself; a
    mini-mask crops at the ROI expressed in its GT box's frame.
    """
    if not use_mini_mask:
        return rois, roi_masks
    boxes = box_ops.boxes_in_frame(rois, roi_gt_boxes)
    # A one-pixel zero border: crop_and_resize returns the extrapolation value for
    # samples even 1e-6 past the last pixel (ROI == GT box lands there by rounding),
    # and beyond the box the mask is 0 anyway, as in the full-mask path.
    shape = tf.cast(tf.shape(gt_masks)[:2], tf.float32)
    scale = tf.tile((shape - 1.0) / (shape + 1.0), [2])
    boxes = boxes * scale + tf.tile(1.0 / (shape + 1.0), [2])
    return boxes, tf.pad(roi_masks, [[0, 0], [1, 1], [1, 1], [0, 0]])


def _valid_gt(gt_class_ids, gt_boxes, gt_masks):
    """Drop padding (zero boxes or class 0); split off crowds (negative ids).

    Returns (gt_class_ids [G'], gt_boxes [G', 4], gt_masks [mh, mw, G'], crowd_boxes [K, 4]).
    """
    valid = tf.reduce_any(tf.not_equal(gt_boxes, 0.0), axis=1) & tf.not_equal(gt_class_ids, 0)
    gt_boxes = tf.boolean_mask(gt_boxes, valid)
    gt_class_ids = tf.boolean_mask(gt_class_ids, valid)
    gt_masks = tf.boolean_mask(gt_masks, valid, axis=2)
    is_crowd = gt_class_ids < 0
    keep = tf.logical_not(is_crowd)
    return (tf.boolean_mask(gt_class_ids, keep), tf.boolean_mask(gt_boxes, keep),
            tf.boolean_mask(gt_masks, keep, axis=2), tf.boolean_mask(gt_boxes, is_crowd))


def _sample(proposals, gt_boxes, crowd_boxes, spec, seed):
    """Positive and negative ROI indices into proposals, and the IoU matrix [N, G + 1]."""
    T, P = spec.sizes
    zero_col = tf.zeros([tf.shape(proposals)[0], 1])
    # A trailing zero column makes max/argmax defined when there is no GT; positives
    # (IoU >= 0.5) never pick it.
    overlaps = tf.concat([box_ops.iou_matrix(proposals, gt_boxes), zero_col], axis=1)
    crowd_max = tf.reduce_max(tf.concat([box_ops.iou_matrix(proposals, crowd_boxes), zero_col], 1), 1)
    roi_iou_max = tf.reduce_max(overlaps, axis=1)
    positive = roi_iou_max >= POSITIVE_IOU
    negative = (roi_iou_max < POSITIVE_IOU) & (crowd_max < CROWD_IOU)

    pos_idx = _shuffle(tf.cast(tf.where(positive)[:, 0], tf.int32), seed, 1)[:P]
    n_pos = tf.shape(pos_idx)[0]
    # Matterport's ratio rule; with no positive at all, fill the image with negatives.
    n_neg = tf.cast(tf.cast(n_pos, tf.float64) / spec.positive_ratio + 1e-6, tf.int32) - n_pos
    n_neg = tf.where(n_pos > 0, tf.minimum(n_neg, T - n_pos), T)
    neg_idx = _shuffle(tf.cast(tf.where(negative)[:, 0], tf.int32), seed, 2)[:n_neg]
    return pos_idx, neg_idx, overlaps


def detection_targets(proposals, gt_class_ids, gt_boxes, gt_masks, spec, seed=None):
    """Sample ROIs and build their class, box and mask targets for ONE image.

    proposals: float [N, 4] normalised, zero rows = padding.
    gt_class_ids: int [G] (0 = padding, negative = crowd). gt_boxes: float [G, 4] normalised.
    gt_masks: float/bool [mh, mw, G]: mini-masks (spec.use_mini_mask) or full-image masks.
    spec: ``TargetSpec``. seed: None (stateful shuffles) or an int / int [2] tensor for
    reproducible sampling.

    Returns, with (T, P) = spec.sizes:
      rois float32 [T, 4]: positives in rows [0, num_positive), then negatives, then zeros.
      roi_class_ids int32 [T]: GT class of positives, 0 elsewhere.
      roi_deltas float32 [T, 4]: positive deltas to their best GT / bbox_std_dev, 0 elsewhere.
      mask_targets float32 [P, Mh, Mw] in {0, 1}: rows [0, num_positive), zeros after.
      num_positive int32 scalar.
    """
    T, P = spec.sizes
    mh, mw = spec.mask_shape
    # Targets never carry gradients back into the RPN.
    proposals = tf.stop_gradient(tf.cast(tf.reshape(proposals, [-1, 4]), tf.float32))
    proposals, _ = box_ops.trim_zero_rows(proposals)
    # Crowds are not matched; they only stop ROIs over them from being negatives.
    gt_class_ids, gt_boxes, gt_masks, crowd_boxes = _valid_gt(
        tf.cast(tf.reshape(gt_class_ids, [-1]), tf.int32), tf.cast(tf.reshape(gt_boxes, [-1, 4]), tf.float32),
        tf.cast(gt_masks, tf.float32))
    if spec.include_gt:
        proposals = tf.concat([proposals, gt_boxes], axis=0)

    pos_idx, neg_idx, overlaps = _sample(proposals, gt_boxes, crowd_boxes, spec, seed)
    n_pos = tf.shape(pos_idx)[0]
    pos_rois = tf.gather(proposals, pos_idx)
    neg_rois = tf.gather(proposals, neg_idx)
    assignment = tf.cast(tf.argmax(tf.gather(overlaps, pos_idx), axis=1), tf.int32)
    roi_gt_boxes = tf.gather(gt_boxes, assignment)
    roi_gt_class_ids = tf.gather(gt_class_ids, assignment)
    deltas = box_ops.encode_deltas(pos_rois, roi_gt_boxes, spec.bbox_std_dev)

    # Masks: crop each positive ROI out of its GT's mask.
    roi_masks = tf.gather(tf.transpose(gt_masks, [2, 0, 1])[..., None], assignment)
    boxes, roi_masks = mask_crop_boxes(pos_rois, roi_gt_boxes, gt_masks, roi_masks, spec.use_mini_mask)
    masks = tf.image.crop_and_resize(roi_masks, boxes, tf.range(n_pos), (mh, mw))
    masks = tf.round(tf.squeeze(masks, axis=3))

    n_rois = n_pos + tf.shape(neg_rois)[0]
    rois = tf.pad(tf.concat([pos_rois, neg_rois], axis=0), [[0, T - n_rois], [0, 0]])
    roi_class_ids = tf.pad(roi_gt_class_ids, [[0, T - n_pos]])
    roi_deltas = tf.pad(deltas, [[0, T - n_pos], [0, 0]])
    masks = tf.pad(masks, [[0, P - n_pos], [0, 0], [0, 0]])
    return (tf.ensure_shape(rois, [T, 4]),
            tf.ensure_shape(roi_class_ids, [T]),
            tf.ensure_shape(roi_deltas, [T, 4]),
            tf.ensure_shape(masks, [P, mh, mw]),
            n_pos)


def target_signature(spec):
    """tf.map_fn output signature of one image's targets."""
    T, P = spec.sizes
    return (tf.TensorSpec([T, 4], tf.float32), tf.TensorSpec([T], tf.int32),
            tf.TensorSpec([T, 4], tf.float32), tf.TensorSpec([P, *spec.mask_shape], tf.float32),
            tf.TensorSpec([], tf.int32))


def batch_detection_targets(proposals, gt_class_ids, gt_boxes, gt_masks, spec, seed=None):
    """``detection_targets`` over a batch: inputs [B, ...], outputs [B, ...], num_positive [B].

    spec: ``TargetSpec``. seed: None or an int / int [2] tensor (vary it per step, e.g.
    [SEED, step]); image b uses tf.random.experimental.stateless_fold_in(seed, b), so images differ.
    """
    index = tf.range(tf.shape(proposals)[0])
    base = None if seed is None else _as_seed(seed)

    def one(args):
        p, c, g, m, i = args
        s = None if base is None else tf.random.experimental.stateless_fold_in(base, i)
        return detection_targets(p, c, g, m, spec, s)

    return tf.map_fn(one, (proposals, gt_class_ids, gt_boxes, gt_masks, index),
                     fn_output_signature=target_signature(spec))
