"""The Mask R-CNN network as a Keras 3 model built from the per-component files.

``MaskRCNNNet`` holds three weight-carrying sub-models and the weightless graph layers:

- ``feature_model``: image [B, H, W, 3] -> P2..P6 and RPN outputs (backbone, FPN, ``rpn_model``);
- ``box_head``: pooled ROIs [N, 7, 7, D] -> class logits/probs [N, C], deltas [N, C, 4];
- ``mask_head``: pooled ROIs [N, 14, 14, D] -> sigmoid masks [N, 28, 28, C].

All boxes are normalised (y1, x1, y2, x2). ``weight_groups()`` gives the flat name -> layer map
that the HDF5 file uses (``rpn_model`` stays one group, as in matterport's file).
"""
from __future__ import annotations

import keras
import tensorflow as tf

from mrcnn.modeling.backbone import build_backbone
from mrcnn.modeling.detection import DetectionLayer
from mrcnn.modeling.fpn import build_fpn
from mrcnn.modeling.heads import build_box_head, build_mask_head
from mrcnn.modeling.proposals import ProposalLayer
from mrcnn.modeling.roi_align import PyramidROIAlign, molded_shapes
from mrcnn.modeling.rpn import apply_rpn, build_rpn_model


def build_feature_model(config):
    """Functional model: image [B, H, W, C] -> [P2, P3, P4, P5, P6, rpn_logits, rpn_probs, rpn_deltas]."""
    h, w = (None, None) if config.IMAGE_RESIZE_MODE in ("none", "pad64") else tuple(config.IMAGE_SHAPE[:2])
    image = keras.Input(shape=(h, w, config.IMAGE_CHANNEL_COUNT), name="input_image")
    _, c2, c3, c4, c5 = build_backbone(image, config)
    pyramid = build_fpn(c2, c3, c4, c5, config.TOP_DOWN_PYRAMID_SIZE)
    rpn = build_rpn_model(config.RPN_ANCHOR_STRIDE, len(config.RPN_ANCHOR_RATIOS),
                          config.TOP_DOWN_PYRAMID_SIZE, config.RPN_CONV_CHANNELS)
    logits, probs, deltas = apply_rpn(rpn, pyramid)
    return keras.Model(image, pyramid + [logits, probs, deltas], name="mask_rcnn_features")


def at_least_one_row(fn, x):
    """fn(x) for x [N, ...] with N possibly 0: x gets one zero row when empty, which is sliced off.

    Why: oneDNN's BatchNorm and convolutions reject an empty batch ("Incompatible shapes:
    [16] vs. [0,14,14,32]" in mrcnn_mask_bn1), and an image without detections gives one.
    Rows are independent at inference (BatchNorm uses its moving statistics), so the padding
    changes nothing else; padding by zero rows costs nothing when N > 0. Not for training with
    TRAIN_BN: a padded row would enter the batch statistics (the training graph skips the mask
    head instead when a batch has no positive ROI).
    """
    x = tf.convert_to_tensor(x)
    n = tf.shape(x)[0]
    padding = [[0, tf.maximum(1 - n, 0)]] + [[0, 0]] * (x.shape.rank - 1)
    return fn(tf.pad(x, padding))[:n]


class MaskRCNNNet(keras.Model):
    """Keras model for both modes. ``call`` runs inference and returns
    (detections [B, max_det, 6], masks [N, 28, 28] for the valid detections in image-major order,
    counts [B]). Training uses the sub-models directly (see ``mrcnn.engine.training``)."""

    def __init__(self, config, mode="inference", **kwargs):
        super().__init__(name="mask_rcnn", **kwargs)
        self.config = config
        self.mode = mode
        self.feature_model = build_feature_model(config)
        self.box_head = build_box_head(config.POOL_SIZE, config.TOP_DOWN_PYRAMID_SIZE, config.NUM_CLASSES,
                                       config.FPN_CLASSIF_FC_LAYERS_SIZE, config.TRAIN_BN)
        self.mask_head = build_mask_head(config.MASK_POOL_SIZE, config.TOP_DOWN_PYRAMID_SIZE, config.NUM_CLASSES,
                                         config.MASK_HEAD_CHANNELS, config.TRAIN_BN)
        proposal_count = config.POST_NMS_ROIS_TRAINING if mode == "training" else config.POST_NMS_ROIS_INFERENCE
        self.proposals = ProposalLayer(proposal_count, config.RPN_NMS_THRESHOLD, config.PRE_NMS_LIMIT,
                                       config.RPN_BBOX_STD_DEV, name="ROI", dtype="float32")
        gather = bool(getattr(config, "XLA_COMPILE", False))   # the ROIAlign XLA can compile
        self.roi_align_box = PyramidROIAlign((config.POOL_SIZE,) * 2, name="roi_align_classifier",
                                             dtype="float32", use_gather=gather)
        self.roi_align_mask = PyramidROIAlign((config.MASK_POOL_SIZE,) * 2, name="roi_align_mask",
                                              dtype="float32", use_gather=gather)
        self.detection = DetectionLayer(config.DETECTION_MAX_INSTANCES, config.DETECTION_MIN_CONFIDENCE,
                                        config.DETECTION_NMS_THRESHOLD, config.BBOX_STD_DEV,
                                        name="mrcnn_detection", dtype="float32")

    # ------------------------------------------------------------------ structure
    def weight_groups(self):
        """Ordered {name: layer or nested model} of everything that carries weights."""
        groups = {}
        for model in (self.feature_model, self.box_head, self.mask_head):
            for layer in model.layers:
                if layer.weights:
                    groups[layer.name] = layer
        return groups

    def leaf_layers(self):
        """Every layer, with nested models (``rpn_model``) expanded, for trainability regexes."""
        out = []
        for model in (self.feature_model, self.box_head, self.mask_head):
            for layer in model.layers:
                if isinstance(layer, keras.Model):
                    out.extend(layer.layers)
                else:
                    out.append(layer)
        return out

    def get_layer(self, name=None, index=None):
        for layer in self.leaf_layers() + [l for l in self.weight_groups().values() if isinstance(l, keras.Model)]:
            if layer.name == name:
                return layer
        return super().get_layer(name=name, index=index)

    # ------------------------------------------------------------------ graph pieces
    def features(self, images, training=False):
        # float32 at the boundary: the graph layers (proposals, ROIAlign, targets) work in float32
        # whatever the mixed-precision policy of the convolutions.
        outs = [tf.cast(o, tf.float32) for o in self.feature_model(images, training=training)]
        return outs[:5], outs[5], outs[6], outs[7]

    def classify(self, rois, pyramid, image_shapes, training=False):
        """rois [B, R, 4], image_shapes [B, 2] molded (H, W) -> logits [B, R, C], probs [B, R, C],
        deltas [B, R, C, 4]."""
        batch = tf.shape(rois)[0]
        r = tf.shape(rois)[1]
        flat = tf.reshape(rois, [-1, 4])
        box_ix = tf.repeat(tf.range(batch), r)
        pooled = self.roi_align_box(flat, box_ix, pyramid[:4], image_shapes)
        logits, probs, deltas = (tf.cast(t, tf.float32) for t in self.box_head(pooled, training=training))
        c = self.config.NUM_CLASSES
        return (tf.reshape(logits, [batch, r, c]), tf.reshape(probs, [batch, r, c]),
                tf.reshape(deltas, [batch, r, c, 4]))

    def segment(self, boxes, box_ix, class_ids, pyramid, image_shapes, training=False):
        """Flat boxes [N, 4], their image index [N] and class [N], image_shapes [B, 2] molded (H, W)
        -> mask probs [N, 28, 28]. N may be 0 (see ``at_least_one_row``).

        The graph layers are float32 whatever the mixed-precision policy (see ``features``).
        """
        pooled = self.roi_align_mask(boxes, box_ix, pyramid[:4], image_shapes)
        masks = at_least_one_row(lambda x: self.mask_head(x, training=training), pooled)
        masks = tf.transpose(tf.cast(masks, tf.float32), [0, 3, 1, 2])   # [N, C, 28, 28]
        return tf.gather(masks, tf.cast(class_ids, tf.int32), batch_dims=1)

    def call(self, inputs, training=False):
        """inputs: (images [B, H, W, 3] molded float32, windows [B, 4] normalised, anchors [A, 4] normalised)."""
        images, windows, anchors = inputs
        pyramid, _, rpn_probs, rpn_deltas = self.features(images, training=False)
        rois = self.proposals(rpn_probs, rpn_deltas, anchors)
        shapes = molded_shapes(images)
        _, probs, deltas = self.classify(rois, pyramid, shapes)
        detections = self.detection(rois, probs, deltas, windows)
        valid = detections[..., 4] > 0
        flat = tf.boolean_mask(detections, valid)
        box_ix = tf.cast(tf.where(valid)[:, 0], tf.int32)
        masks = self.segment(flat[:, :4], box_ix, flat[:, 4], pyramid, shapes)
        counts = tf.reduce_sum(tf.cast(valid, tf.int32), axis=1)
        return detections, masks, counts
