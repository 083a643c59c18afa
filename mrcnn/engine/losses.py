"""Mask R-CNN losses with matterport's definitions, as TensorFlow module functions.

Each returns a float32 scalar, is 0 when there is nothing to score, and never
NaN: masked terms are computed densely, multiplied by a 0/1 weight and divided
by max(count, 1) (no dynamic shapes, so it also runs under XLA).

Normalisation follows matterport, so LOSS_WEIGHTS keep their meaning:
the box losses are the mean over the 4 coordinates of every positive
(Keras ``K.mean`` of a [P, 4] tensor), the mask loss the mean over every
pixel of the positive rows.
"""
import tensorflow as tf

_EPS = 1e-7   # Keras' epsilon: clip probabilities like K.binary_crossentropy


def _safe_mean(total, count):
    return tf.math.divide_no_nan(total, tf.cast(count, tf.float32))


def smooth_l1(y_true, y_pred):
    """Elementwise smooth-L1: 0.5 x^2 where |x| < 1, else |x| - 0.5."""
    diff = tf.abs(tf.cast(y_true, tf.float32) - tf.cast(y_pred, tf.float32))
    return tf.where(diff < 1.0, 0.5 * diff * diff, diff - 0.5)


def _squeeze_last(x):
    """[B, A, 1] -> [B, A] (matterport feeds rpn_match with a trailing 1)."""
    x = tf.convert_to_tensor(x)
    return tf.squeeze(x, -1) if x.shape.rank == 3 else x


def rpn_class_loss(rpn_match, rpn_class_logits):
    """Anchor objectness cross-entropy over non-neutral anchors.

    rpn_match: int [B, A] (or [B, A, 1]): 1 positive, -1 negative, 0 neutral.
    rpn_class_logits: float [B, A, 2] (background, foreground) logits.
    """
    match = tf.cast(_squeeze_last(rpn_match), tf.int32)
    labels = tf.cast(match == 1, tf.int32)
    weight = tf.cast(match != 0, tf.float32)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=tf.cast(rpn_class_logits, tf.float32))
    return _safe_mean(tf.reduce_sum(ce * weight), tf.reduce_sum(weight))


def rpn_bbox_loss(target_bbox, rpn_match, rpn_bbox):
    """Smooth-L1 between positive anchors' predicted deltas and their targets.

    target_bbox: float [B, R, 4]: image b's first (number of positives) rows hold the
        targets of its positive anchors in anchor order (``build_rpn_targets``).
    rpn_match: int [B, A] (or [B, A, 1]). rpn_bbox: float [B, A, 4] predicted deltas.
    """
    match = tf.cast(_squeeze_last(rpn_match), tf.int32)
    is_pos = match == 1
    # Row of each positive anchor in target_bbox: its rank among the image's positives.
    rank = tf.cumsum(tf.cast(is_pos, tf.int32), axis=1) - 1
    rows = tf.shape(target_bbox)[1]
    valid = is_pos & (rank < rows)
    targets = tf.gather(tf.cast(target_bbox, tf.float32), tf.clip_by_value(rank, 0, rows - 1), batch_dims=1)
    weight = tf.cast(valid, tf.float32)[..., None]
    loss = smooth_l1(targets, rpn_bbox) * weight
    return _safe_mean(tf.reduce_sum(loss), 4.0 * tf.reduce_sum(weight))


def mrcnn_class_loss(target_class_ids, pred_class_logits, active_class_ids):
    """Classifier cross-entropy, ignoring ROIs predicted as a class the image's source lacks.

    target_class_ids: int [B, T] (padding ROIs are 0 and count as background, as in
        matterport). pred_class_logits: float [B, T, C]. active_class_ids: [B, C] 0/1.
    Loss = sum(ce * active[argmax]) / sum(active[argmax]). Unlike matterport, which
    uses the first image's active classes for the whole batch, each image uses its own.
    """
    logits = tf.cast(pred_class_logits, tf.float32)
    target = tf.cast(target_class_ids, tf.int32)
    pred_ids = tf.argmax(logits, axis=-1, output_type=tf.int32)
    pred_active = tf.gather(tf.cast(active_class_ids, tf.float32), pred_ids, batch_dims=1)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=target, logits=logits)
    return _safe_mean(tf.reduce_sum(ce * pred_active), tf.reduce_sum(pred_active))


def mrcnn_bbox_loss(target_deltas, target_class_ids, pred_bbox):
    """Smooth-L1 on positive ROIs (class > 0), using the deltas predicted for the true class.

    target_deltas: float [B, T, 4]. target_class_ids: int [B, T]. pred_bbox: float [B, T, C, 4].
    """
    ids = tf.cast(target_class_ids, tf.int32)
    num_classes = tf.shape(pred_bbox)[2]
    pred = tf.gather(tf.cast(pred_bbox, tf.float32), tf.clip_by_value(ids, 0, num_classes - 1),
                     batch_dims=2)                                        # [B, T, 4]
    weight = tf.cast(ids > 0, tf.float32)[..., None]
    loss = smooth_l1(target_deltas, pred) * weight
    return _safe_mean(tf.reduce_sum(loss), 4.0 * tf.reduce_sum(weight))


def mrcnn_mask_loss(target_masks, target_class_ids, pred_masks, valid, from_logits=False):
    """Binary cross-entropy of the true class's mask channel, over valid (positive) rows.

    target_masks: float [M, Mh, Mw] in {0, 1}. target_class_ids: int [M].
    pred_masks: float [M, Mh, Mw, C]: sigmoid probabilities (matterport), or logits
        with from_logits=True. valid: bool [M]. Mean over every pixel of the valid rows.
    """
    ids = tf.cast(target_class_ids, tf.int32)
    num_classes = tf.shape(pred_masks)[-1]
    pred = tf.transpose(tf.cast(pred_masks, tf.float32), [0, 3, 1, 2])   # [M, C, Mh, Mw]
    pred = tf.gather(pred, tf.clip_by_value(ids, 0, num_classes - 1), batch_dims=1)
    target = tf.cast(target_masks, tf.float32)
    if from_logits:
        bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=pred)
    else:
        p = tf.clip_by_value(pred, _EPS, 1.0 - _EPS)
        bce = -(target * tf.math.log(p) + (1.0 - target) * tf.math.log(1.0 - p))
    weight = tf.cast(valid, tf.float32)
    pixels = tf.cast(tf.shape(target)[1] * tf.shape(target)[2], tf.float32)
    total = tf.reduce_sum(bce * weight[:, None, None])
    return _safe_mean(total, pixels * tf.reduce_sum(weight))


def _is_batchnorm_scale_or_shift(variable):
    """BatchNorm gamma/beta, told apart by the variable's path (Keras 3) or name (tf.Variable)."""
    name = getattr(variable, "path", None) or variable.name
    return "gamma" in name or "beta" in name


def l2_weight_decay(variables, weight_decay):
    """Matterport's weight decay: sum over variables of weight_decay * sum(v^2) / size(v).

    That is Keras' ``regularizers.l2(weight_decay)(v) / size(v)`` (no 1/2 factor).
    Variables whose path/name contains "gamma" or "beta" (BatchNorm scale and shift)
    are excluded, as matterport does by name; pass the trainable variables.
    """
    total = tf.constant(0.0, tf.float32)
    for v in variables:
        if _is_batchnorm_scale_or_shift(v):
            continue
        x = tf.cast(tf.convert_to_tensor(v), tf.float32)
        total += float(weight_decay) * tf.reduce_sum(tf.square(x)) / tf.cast(tf.size(x), tf.float32)
    return total
