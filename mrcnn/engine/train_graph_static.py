"""The training forward pass with static shapes, for ``XLA_COMPILE = True`` (``jit_compile``).

Same five losses as ``mrcnn.engine.train_graph.compute_losses``, with ``static_targets`` for the
second-stage targets and the mask head run on all P positive slots of every image, padding rows
weighted 0 in the mask loss (no ``boolean_mask``). Needs ``PyramidROIAlign(use_gather=True)``
(``MaskRCNNNet`` sets it from XLA_COMPILE). With TRAIN_BN the mask head's BatchNorm then sees
the padding rows too, unlike the dynamic path.
"""
from __future__ import annotations

import tensorflow as tf

from mrcnn.engine import losses as L
from mrcnn.engine.proposal_targets import _as_seed, target_sizes
from mrcnn.modeling.roi_align import molded_shapes
from mrcnn.engine.static_targets import detection_targets_static, seed_plus


def batch_targets_static(proposals, gt_class_ids, gt_boxes, gt_masks, config, seed=None):
    """``detection_targets_static`` over a batch ([B, ...] in and out, num_positive [B])."""
    T, P = target_sizes(config)
    mh, mw = (int(v) for v in config.MASK_SHAPE)
    base = None if seed is None else _as_seed(seed)

    def one(args):
        p, c, g, m, i = args
        return detection_targets_static(p, c, g, m, config, None if base is None else seed_plus(base, 10 + i))

    return tf.map_fn(
        one, (proposals, gt_class_ids, gt_boxes, gt_masks, tf.range(tf.shape(proposals)[0])),
        fn_output_signature=(tf.TensorSpec([T, 4], tf.float32), tf.TensorSpec([T], tf.int32),
                             tf.TensorSpec([T, 4], tf.float32), tf.TensorSpec([P, mh, mw], tf.float32),
                             tf.TensorSpec([], tf.int32)))


def compute_losses_static(net, batch, anchors, config, training, seed=None):
    """As ``train_graph.compute_losses``: batch dict, anchors [A, 4] -> {loss name: scalar}."""
    mean = tf.constant(config.MEAN_PIXEL, tf.float32)
    images = tf.cast(batch["image"], tf.float32) - mean
    pyramid, rpn_logits, rpn_probs, rpn_deltas = net.features(images, training=training)
    rpn_rois = tf.stop_gradient(net.proposals(rpn_probs, rpn_deltas, anchors))
    rois, roi_class_ids, roi_deltas, mask_targets, num_pos = batch_targets_static(
        rpn_rois, batch["gt_class_ids"], batch["gt_boxes"], tf.cast(batch["gt_masks"], tf.float32),
        config, seed=seed)
    shapes = molded_shapes(images)   # the pyramid level uses each image's molded area
    logits, _, deltas = net.classify(rois, pyramid, shapes, training=training)

    # Every image's P positive slots (rows [0, num_pos) are real), image-major.
    _, p = target_sizes(config)
    images_in_batch = tf.shape(rois)[0]
    valid = tf.reshape(tf.sequence_mask(num_pos, p), [-1])
    pos_rois = tf.reshape(rois[:, :p], [-1, 4])
    pos_class = tf.reshape(roi_class_ids[:, :p], [-1])
    pos_targets = tf.reshape(mask_targets, [-1] + list(mask_targets.shape[2:]))
    pooled = net.roi_align_mask(pos_rois, tf.repeat(tf.range(images_in_batch), p), pyramid[:4], shapes)
    pred_masks = tf.cast(net.mask_head(pooled, training=training), tf.float32)
    return {
        "rpn_class_loss": L.rpn_class_loss(batch["rpn_match"], rpn_logits),
        "rpn_bbox_loss": L.rpn_bbox_loss(batch["rpn_bbox"], batch["rpn_match"], rpn_deltas),
        "mrcnn_class_loss": L.mrcnn_class_loss(roi_class_ids, logits, batch["active_class_ids"]),
        "mrcnn_bbox_loss": L.mrcnn_bbox_loss(roi_deltas, roi_class_ids, deltas),
        "mrcnn_mask_loss": L.mrcnn_mask_loss(pos_targets, pos_class, pred_masks, valid),
    }
