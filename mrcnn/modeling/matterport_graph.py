"""matterport's graph building blocks by their names and signatures (re-exported by
``mrcnn.model``), wrapping the project's layers: ``BatchNorm``, ``resnet_graph``,
``rpn_graph``, ``build_rpn_model``, ``ProposalLayer``, ``PyramidROIAlign``, ``DetectionLayer``,
``fpn_classifier_graph``, ``build_fpn_mask_graph``.

The layers take matterport's list inputs and batched ROIs [B, N, ...]; boxes are normalised
(y1, x1, y2, x2). Shapes and weight names are matterport's, so ``mask_rcnn_coco.h5`` fits.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from mrcnn.modeling import backbone
from mrcnn.modeling import detection
from mrcnn.modeling import heads
from mrcnn.modeling import proposals
from mrcnn.modeling import roi_align
from mrcnn.modeling import rpn
from mrcnn.structures import boxes_tf


@keras.saving.register_keras_serializable(package="mrcnn_matterport")
class BatchNorm(backbone.BatchNorm):
    """matterport's BatchNorm: follows the ``training`` flag it is called with
    (``BatchNorm(name=...)(x, training=train_bn)``); False freezes the statistics."""

    def __init__(self, train_bn=True, **kwargs):
        super().__init__(train_bn=train_bn, **kwargs)


def resnet_graph(input_image, architecture, stage5=False, train_bn=True):
    """[C1, C2, C3, C4, C5] of a ResNet ("resnet50" / "resnet101"); C5 is None without stage5."""
    return backbone.resnet_graph(input_image, architecture, stage5=stage5, train_bn=train_bn)


def build_rpn_model(anchor_stride, anchors_per_location, depth):
    """The shared ``rpn_model``: [B, h, w, depth] -> [logits [B, A, 2], probs [B, A, 2], deltas [B, A, 4]]."""
    return rpn.build_rpn_model(anchor_stride, anchors_per_location, depth)


def rpn_graph(feature_map, anchors_per_location, anchor_stride):
    """The RPN on one feature map: [rpn_class_logits, rpn_probs, rpn_bbox]."""
    model = rpn.build_rpn_model(anchor_stride, anchors_per_location, feature_map.shape[-1])
    return list(model(feature_map))


def _config_value(config, name, default):
    return getattr(config, name, default) if config is not None else default


class ProposalLayer(proposals.ProposalLayer):
    """matterport's ``ProposalLayer(proposal_count, nms_threshold, config)`` called on
    ``[rpn_probs [B, A, 2], rpn_bbox [B, A, 4], anchors [B, A, 4]]`` -> [B, proposal_count, 4]."""

    def __init__(self, proposal_count, nms_threshold, config=None, **kwargs):
        kwargs.setdefault("pre_nms_limit", _config_value(config, "PRE_NMS_LIMIT", 6000))
        kwargs.setdefault("std_dev", _config_value(config, "RPN_BBOX_STD_DEV", (0.1, 0.1, 0.2, 0.2)))
        super().__init__(proposal_count, nms_threshold, **kwargs)

    def call(self, inputs):
        return super().call(*inputs)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.proposal_count, 4)


class PyramidROIAlign(keras.layers.Layer):
    """matterport's ``PyramidROIAlign(pool_shape)`` on ``[boxes [B, N, 4], image_meta, P2, P3,
    P4, P5]`` -> [B, N, pool_h, pool_w, C]. The molded image size comes from image_meta."""

    def __init__(self, pool_shape, **kwargs):
        super().__init__(**kwargs)
        self.pool_shape = tuple(int(v) for v in pool_shape)

    def call(self, inputs):
        boxes, meta, maps = inputs[0], inputs[1], list(inputs[2:])
        b, n = tf.shape(boxes)[0], tf.shape(boxes)[1]
        flat = tf.stop_gradient(tf.reshape(boxes, [-1, 4]))
        box_ix = tf.repeat(tf.range(b), n)
        levels = roi_align.roi_levels(flat, meta[0, 4] * meta[0, 5])
        positions, crops = [], []
        for i, fmap in enumerate(maps):
            ix = tf.cast(tf.where(tf.equal(levels, i + 2))[:, 0], tf.int32)
            crops.append(tf.image.crop_and_resize(fmap, tf.gather(flat, ix), tf.gather(box_ix, ix),
                                                  self.pool_shape, method="bilinear"))
            positions.append(ix)
        pooled = tf.dynamic_stitch(positions, crops)
        return tf.reshape(pooled, tf.concat([[b, n], tf.shape(pooled)[1:]], axis=0))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0][:2]) + self.pool_shape + (input_shape[2][-1],)

    def get_config(self):
        return {**super().get_config(), "pool_shape": list(self.pool_shape)}


class DetectionLayer(detection.DetectionLayer):
    """matterport's ``DetectionLayer(config)`` on ``[rois, mrcnn_class, mrcnn_bbox, image_meta]``
    -> [B, DETECTION_MAX_INSTANCES, (y1, x1, y2, x2, class_id, score)] normalised."""

    def __init__(self, config=None, **kwargs):
        for key, name, default in (("max_instances", "DETECTION_MAX_INSTANCES", 100),
                                   ("min_confidence", "DETECTION_MIN_CONFIDENCE", 0.7),
                                   ("nms_threshold", "DETECTION_NMS_THRESHOLD", 0.3),
                                   ("std_dev", "BBOX_STD_DEV", (0.1, 0.1, 0.2, 0.2))):
            kwargs.setdefault(key, _config_value(config, name, default))
        super().__init__(**kwargs)

    def call(self, inputs):
        rois, probs, deltas, meta = inputs
        return super().call(rois, probs, deltas, boxes_tf.norm_boxes(meta[:, 7:11], meta[:, 4:6]))

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.max_instances, 6)


class PerROI(keras.layers.Layer):
    """Applies a per-ROI model to [B, N, ...] (flattened to [B*N, ...]), like TimeDistributed."""

    def __init__(self, model, **kwargs):
        super().__init__(**kwargs)
        self.model = model

    def call(self, x):
        b, n = tf.shape(x)[0], tf.shape(x)[1]
        outs = self.model(tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], axis=0)))
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        res = [tf.reshape(o, tf.concat([[b, n], tf.shape(o)[1:]], axis=0)) for o in outs]
        return res if len(res) > 1 else res[0]


def fpn_classifier_graph(rois, feature_maps, image_meta, pool_size, num_classes, train_bn=True,
                         fc_layers_size=1024):
    """Box head on [B, N, 4] ROIs: [mrcnn_class_logits [B, N, C], mrcnn_probs [B, N, C],
    mrcnn_bbox [B, N, C, 4]]."""
    pooled = PyramidROIAlign([pool_size, pool_size], name="roi_align_classifier")(
        [rois, image_meta] + list(feature_maps))
    head = heads.build_box_head(pool_size, feature_maps[0].shape[-1], num_classes, fc_layers_size, train_bn)
    return PerROI(head, name="mrcnn_classifier_head")(pooled)


def build_fpn_mask_graph(rois, feature_maps, image_meta, pool_size, num_classes, train_bn=True):
    """Mask head on [B, N, 4] ROIs: sigmoid masks [B, N, 2*pool, 2*pool, C]."""
    pooled = PyramidROIAlign([pool_size, pool_size], name="roi_align_mask")(
        [rois, image_meta] + list(feature_maps))
    head = heads.build_mask_head(pool_size, feature_maps[0].shape[-1], num_classes, 256, train_bn)
    return PerROI(head, name="mrcnn_mask_head")(pooled)
