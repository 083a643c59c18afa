"""The training forward pass with static shapes, for ``XLA_COMPILE = True`` (``jit_compile``).

Same five losses as ``mrcnn.engine.train_graph.compute_losses`` (the RPN and box-head part is
its ``box_losses``), with ``static_targets`` for the second-stage targets and the mask head run
on all P positive slots of every image, padding rows weighted 0 in the mask loss (no
``boolean_mask``). Needs ``PyramidROIAlign(use_gather=True)`` (``MaskRCNNNet`` sets it from
XLA_COMPILE). With TRAIN_BN the mask head's BatchNorm then sees the padding rows too, unlike
the dynamic path.
"""
from __future__ import annotations

import tensorflow as tf

from mrcnn.engine import losses as L
from mrcnn.engine.proposal_targets import _as_seed, target_signature
from mrcnn.engine.static_targets import detection_targets_static, seed_plus
from mrcnn.engine.train_graph import box_losses


def batch_targets_static(proposals, gt_class_ids, gt_boxes, gt_masks, spec, seed=None):
    """``detection_targets_static`` over a batch ([B, ...] in and out, num_positive [B]).

    spec: ``proposal_targets.TargetSpec``."""
    base = None if seed is None else _as_seed(seed)

    def one(args):
        p, c, g, m, i = args
        return detection_targets_static(p, c, g, m, spec, None if base is None else seed_plus(base, 10 + i))

    return tf.map_fn(one, (proposals, gt_class_ids, gt_boxes, gt_masks, tf.range(tf.shape(proposals)[0])),
                     fn_output_signature=target_signature(spec))


def compute_losses_static(net, batch, anchors, spec, mean_pixel, training, seed=None):
    """As ``train_graph.compute_losses``: batch dict, anchors [A, 4], spec ``TargetSpec``,
    mean_pixel [3] -> {loss name: scalar}."""
    losses, targets, pyramid, shapes = box_losses(
        net, batch, anchors, mean_pixel, training,
        lambda *gt: batch_targets_static(*gt, spec, seed=seed))
    rois, roi_class_ids, _, mask_targets, num_pos = targets

    # Every image's P positive slots (rows [0, num_pos) are real), image-major.
    _, p = spec.sizes
    images_in_batch = tf.shape(rois)[0]
    valid = tf.reshape(tf.sequence_mask(num_pos, p), [-1])
    pos_rois = tf.reshape(rois[:, :p], [-1, 4])
    pos_class = tf.reshape(roi_class_ids[:, :p], [-1])
    pos_targets = tf.reshape(mask_targets, [-1] + list(mask_targets.shape[2:]))
    pooled = net.roi_align_mask(pos_rois, tf.repeat(tf.range(images_in_batch), p), pyramid[:4], shapes)
    pred_masks = tf.cast(net.mask_head(pooled, training=training), tf.float32)
    losses["mrcnn_mask_loss"] = L.mrcnn_mask_loss(pos_targets, pos_class, pred_masks, valid)
    return losses
