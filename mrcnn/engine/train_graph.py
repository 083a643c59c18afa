"""The training forward pass: network outputs, second-stage targets and the five losses.

Shared by the train step and the validation step (``training`` only changes BatchNorm when
TRAIN_BN is True), so the validation loss is the same quantity as the training loss.
The mask head runs on the positive ROIs only (at most int(T * ROI_POSITIVE_RATIO) per image),
not on all T sampled ROIs as in matterport: negatives have no mask loss anyway.
"""
from __future__ import annotations

import tensorflow as tf

from mrcnn.engine import losses as L
from mrcnn.engine.proposal_targets import batch_detection_targets, target_sizes
from mrcnn.modeling.roi_align import molded_shapes

LOSS_NAMES = ("rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss", "mrcnn_mask_loss")


def compute_losses(net, batch, anchors, config, training, seed=None):
    """batch: dict from ``InputPipeline`` (per replica). anchors: [A, 4] normalised.

    Returns {loss name: scalar} for the five losses (unweighted).
    """
    mean = tf.constant(config.MEAN_PIXEL, tf.float32)
    images = tf.cast(batch["image"], tf.float32) - mean
    pyramid, rpn_logits, rpn_probs, rpn_deltas = net.features(images, training=training)
    rpn_rois = tf.stop_gradient(net.proposals(rpn_probs, rpn_deltas, anchors))

    rois, roi_class_ids, roi_deltas, mask_targets, num_pos = batch_detection_targets(
        rpn_rois, batch["gt_class_ids"], batch["gt_boxes"], tf.cast(batch["gt_masks"], tf.float32),
        config, seed=seed)
    shapes = molded_shapes(images)   # the pyramid level uses each image's molded area
    logits, _, deltas = net.classify(rois, pyramid, shapes, training=training)

    # Positives sit in rows [0, num_pos) of each image's ROIs; gather them across the batch.
    _, p = target_sizes(config)
    valid = tf.sequence_mask(num_pos, p)                                      # [B, P]
    pos_rois = tf.boolean_mask(rois[:, :p], valid)                            # [M, 4]
    pos_image = tf.cast(tf.where(valid)[:, 0], tf.int32)
    pos_class = tf.boolean_mask(roi_class_ids[:, :p], valid)
    pos_targets = tf.boolean_mask(mask_targets, valid)                        # [M, 28, 28]

    def mask_loss():
        pooled = net.roi_align_mask(pos_rois, pos_image, pyramid[:4], shapes)
        pred_masks = tf.cast(net.mask_head(pooled, training=training), tf.float32)  # [M, 28, 28, C]
        return L.mrcnn_mask_loss(pos_targets, pos_class, pred_masks, tf.ones_like(pos_class, tf.bool))

    # A batch without positives (only images without instances) skips the mask head: with
    # TRAIN_BN its BatchNorm would take the moments of an empty batch, i.e. NaN gradients for
    # gamma and NaN moving statistics.
    has_pos = tf.size(pos_class) > 0
    return {
        "rpn_class_loss": L.rpn_class_loss(batch["rpn_match"], rpn_logits),
        "rpn_bbox_loss": L.rpn_bbox_loss(batch["rpn_bbox"], batch["rpn_match"], rpn_deltas),
        "mrcnn_class_loss": L.mrcnn_class_loss(roi_class_ids, logits, batch["active_class_ids"]),
        "mrcnn_bbox_loss": L.mrcnn_bbox_loss(roi_deltas, roi_class_ids, deltas),
        "mrcnn_mask_loss": tf.cond(has_pos, mask_loss, lambda: tf.constant(0.0, tf.float32)),
    }


def total_loss(losses, config, variables=None):
    """Weighted sum of the five losses plus L2 weight decay on ``variables`` (BN gamma/beta excluded)."""
    weights = config.LOSS_WEIGHTS
    total = tf.add_n([tf.cast(weights.get(k, 1.0), tf.float32) * losses[k] for k in LOSS_NAMES])
    if variables and config.WEIGHT_DECAY:
        total = total + L.l2_weight_decay(variables, config.WEIGHT_DECAY)
    return total
