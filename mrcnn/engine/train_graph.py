"""The training forward pass: network outputs, second-stage targets and the five losses.

Shared by the train step and the validation step (``training`` only changes BatchNorm when
TRAIN_BN is True), so the validation loss is the same quantity as the training loss.
The mask head runs on the positive ROIs only (at most int(T * ROI_POSITIVE_RATIO) per image),
not on all T sampled ROIs as in matterport: negatives have no mask loss anyway.
The config is read by the caller: ``TargetSpec.from_config(config)``, MEAN_PIXEL,
LOSS_WEIGHTS and WEIGHT_DECAY come in as values.
"""
from __future__ import annotations

import tensorflow as tf

from mrcnn.config import LOSS_NAMES
from mrcnn.engine import losses as L
from mrcnn.engine.proposal_targets import TargetSpec, batch_detection_targets  # noqa: F401
from mrcnn.modeling.roi_align import molded_shapes

__all__ = ["LOSS_NAMES", "TargetSpec", "box_losses", "compute_losses", "total_loss"]


def box_losses(net, batch, anchors, mean_pixel, training, build_targets):
    """The forward pass up to the box head, shared by the dynamic and the static graph.

    batch: dict from ``InputPipeline``; anchors [A, 4] normalised; mean_pixel [3];
    build_targets(rpn_rois, gt_class_ids, gt_boxes, gt_masks) -> (rois [B, T, 4],
    roi_class_ids [B, T], roi_deltas [B, T, 4], mask_targets [B, P, Mh, Mw], num_pos [B]).
    Returns ({the four RPN and box-head losses}, targets, pyramid, molded shapes).
    """
    images = tf.cast(batch["image"], tf.float32) - tf.constant(mean_pixel, tf.float32)
    pyramid, rpn_logits, rpn_probs, rpn_deltas = net.features(images, training=training)
    rpn_rois = tf.stop_gradient(net.proposals(rpn_probs, rpn_deltas, anchors))
    targets = build_targets(rpn_rois, batch["gt_class_ids"], batch["gt_boxes"],
                            tf.cast(batch["gt_masks"], tf.float32))
    rois, roi_class_ids, roi_deltas = targets[:3]
    shapes = molded_shapes(images)   # the pyramid level uses each image's molded area
    logits, _, deltas = net.classify(rois, pyramid, shapes, training=training)
    losses = {
        "rpn_class_loss": L.rpn_class_loss(batch["rpn_match"], rpn_logits),
        "rpn_bbox_loss": L.rpn_bbox_loss(batch["rpn_bbox"], batch["rpn_match"], rpn_deltas),
        "mrcnn_class_loss": L.mrcnn_class_loss(roi_class_ids, logits, batch["active_class_ids"]),
        "mrcnn_bbox_loss": L.mrcnn_bbox_loss(roi_deltas, roi_class_ids, deltas),
    }
    return losses, targets, pyramid, shapes


def compute_losses(net, batch, anchors, spec, mean_pixel, training, seed=None):
    """batch: dict from ``InputPipeline`` (per replica). anchors: [A, 4] normalised.
    spec: ``TargetSpec``; mean_pixel: [3] (MEAN_PIXEL).

    Returns {loss name: scalar} for the five losses (unweighted).
    """
    losses, targets, pyramid, shapes = box_losses(
        net, batch, anchors, mean_pixel, training,
        lambda *gt: batch_detection_targets(*gt, spec, seed=seed))
    rois, roi_class_ids, _, mask_targets, num_pos = targets

    # Positives sit in rows [0, num_pos) of each image's ROIs; gather them across the batch.
    _, p = spec.sizes
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
    losses["mrcnn_mask_loss"] = tf.cond(has_pos, mask_loss, lambda: tf.constant(0.0, tf.float32))
    return losses


def total_loss(losses, loss_weights, weight_decay, variables=None):
    """Weighted sum of the five losses plus L2 weight decay on ``variables`` (BN gamma/beta excluded).

    loss_weights: {loss name: weight} (LOSS_WEIGHTS; missing names weigh 1);
    weight_decay: float (WEIGHT_DECAY; 0 or None: none).
    """
    total = tf.add_n([tf.cast(loss_weights.get(k, 1.0), tf.float32) * losses[k] for k in LOSS_NAMES])
    if variables and weight_decay:
        total = total + L.l2_weight_decay(variables, weight_decay)
    return total
