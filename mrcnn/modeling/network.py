"""The Mask R-CNN network as a Keras 3 model built from the per-component files.

``MaskRCNNNet`` holds three weight-carrying sub-models and the weightless graph layers:

- ``feature_model``: image [B, H, W, 3] -> P2..P6 and RPN outputs (backbone, FPN, ``rpn_model``);
- ``box_head``: pooled ROIs [N, 7, 7, D] -> class logits/probs [N, C], deltas [N, C, 4];
- ``mask_head``: pooled ROIs [N, 14, 14, D] -> sigmoid masks [N, 28, 28, C].

It takes explicit arguments; ``MaskRCNNNet.from_config(config, mode)`` (through
``network_args``) is the one place that reads a ``Config`` for the network, and
``MaskRCNNNet(**net.get_config())`` rebuilds it. All boxes are normalised (y1, x1, y2, x2).
``weight_groups()`` gives the flat name -> layer map that the HDF5 file uses (``rpn_model``
stays one group, as in matterport's file).
"""
from __future__ import annotations

import numbers

import keras
import tensorflow as tf

from mrcnn.io.config_checks import ConfigError, callable_name, resolve_callable
from mrcnn.modeling.backbone import build_backbone
from mrcnn.modeling.detection import DetectionLayer
from mrcnn.modeling.fpn import build_fpn
from mrcnn.modeling.heads import build_box_head, build_mask_head
from mrcnn.modeling.proposals import ProposalLayer
from mrcnn.modeling.roi_align import PyramidROIAlign, molded_shapes
from mrcnn.modeling.rpn import apply_rpn, build_rpn_model


def build_feature_model(image_shape=(None, None, 3), backbone="resnet101", train_bn=False,
                        pyramid_size=256, anchor_stride=1, anchors_per_location=3,
                        rpn_conv_channels=512):
    """Functional model: image [B, H, W, C] -> [P2, P3, P4, P5, P6, rpn_logits, rpn_probs, rpn_deltas].

    ``image_shape`` (H, W, C), H and W None for variable sizes; ``backbone`` as in
    ``build_backbone``; P2..P6 have ``pyramid_size`` channels; the RPN predicts
    ``anchors_per_location`` anchors every ``anchor_stride`` cells.
    """
    image = keras.Input(shape=tuple(image_shape), name="input_image")
    _, c2, c3, c4, c5 = build_backbone(image, backbone, train_bn)
    pyramid = build_fpn(c2, c3, c4, c5, pyramid_size)
    rpn = build_rpn_model(anchor_stride, anchors_per_location, pyramid_size, rpn_conv_channels)
    logits, probs, deltas = apply_rpn(rpn, pyramid)
    return keras.Model(image, pyramid + [logits, probs, deltas], name="mask_rcnn_features")


def network_args(config, mode="inference"):
    """A Config -> ``MaskRCNNNet``'s explicit arguments: the one place the network reads it.

    Images of IMAGE_RESIZE_MODE "none"/"pad64" vary in size, so H and W are None then. A
    "module:function" BACKBONE (or a function stored as a class attribute) is resolved here.
    """
    c = config
    backbone = c.BACKBONE
    if getattr(backbone, "__self__", None) is c:   # a function stored as a class attribute
        backbone = backbone.__func__
    h, w = ((None, None) if c.IMAGE_RESIZE_MODE in ("none", "pad64")
            else (int(v) for v in c.IMAGE_SHAPE[:2]))
    return dict(
        num_classes=c.NUM_CLASSES, mode=mode, image_shape=(h, w, c.IMAGE_CHANNEL_COUNT),
        backbone=resolve_callable("BACKBONE", backbone), train_bn=c.TRAIN_BN,
        pyramid_size=c.TOP_DOWN_PYRAMID_SIZE, anchor_stride=c.RPN_ANCHOR_STRIDE,
        anchors_per_location=len(c.RPN_ANCHOR_RATIOS), rpn_conv_channels=c.RPN_CONV_CHANNELS,
        pool_size=c.POOL_SIZE, mask_pool_size=c.MASK_POOL_SIZE,
        fc_layers_size=c.FPN_CLASSIF_FC_LAYERS_SIZE, mask_head_channels=c.MASK_HEAD_CHANNELS,
        post_nms_rois_training=c.POST_NMS_ROIS_TRAINING,
        post_nms_rois_inference=c.POST_NMS_ROIS_INFERENCE,
        rpn_nms_threshold=c.RPN_NMS_THRESHOLD, pre_nms_limit=c.PRE_NMS_LIMIT,
        rpn_bbox_std_dev=c.RPN_BBOX_STD_DEV, detection_max_instances=c.DETECTION_MAX_INSTANCES,
        detection_min_confidence=c.DETECTION_MIN_CONFIDENCE,
        detection_nms_threshold=c.DETECTION_NMS_THRESHOLD, bbox_std_dev=c.BBOX_STD_DEV,
        # XLA_COMPILE needs the ROIAlign that XLA can compile (same values).
        use_gather=bool(getattr(c, "XLA_COMPILE", False)))


def _floats(values):
    return tuple(float(v) for v in values)


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


@keras.saving.register_keras_serializable(package="mrcnn")
class MaskRCNNNet(keras.Model):
    """Keras model for both modes. ``call`` runs inference and returns
    (detections [B, max_det, 6], masks [N, 28, 28] for the valid detections in image-major order,
    counts [B]). Training uses the sub-models directly (see ``mrcnn.engine.training``).

    Explicit arguments (a Config's keys in brackets; ``from_config(config, mode)`` reads them):
    num_classes [NUM_CLASSES], background included; mode "inference" or "training";
    image_shape (H, W, C) [IMAGE_SHAPE], H, W None for variable sizes; backbone [BACKBONE];
    train_bn [TRAIN_BN]; pyramid_size [TOP_DOWN_PYRAMID_SIZE]; anchor_stride [RPN_ANCHOR_STRIDE];
    anchors_per_location [len(RPN_ANCHOR_RATIOS)]; rpn_conv_channels [RPN_CONV_CHANNELS];
    pool_size, mask_pool_size [POOL_SIZE, MASK_POOL_SIZE]; fc_layers_size
    [FPN_CLASSIF_FC_LAYERS_SIZE]; mask_head_channels [MASK_HEAD_CHANNELS];
    post_nms_rois_training / _inference [POST_NMS_ROIS_*] (proposals kept in that mode);
    rpn_nms_threshold, pre_nms_limit, rpn_bbox_std_dev [RPN_NMS_THRESHOLD, PRE_NMS_LIMIT,
    RPN_BBOX_STD_DEV]; detection_max_instances, detection_min_confidence,
    detection_nms_threshold, bbox_std_dev [DETECTION_*, BBOX_STD_DEV]; use_gather [XLA_COMPILE]:
    the ROIAlign that XLA compiles. ``cls(**net.get_config())`` rebuilds the same network (same
    weight names and shapes); the layers take the dtype policy in force when it is built.
    """

    def __init__(self, num_classes, mode="inference", *, image_shape=(None, None, 3),
                 backbone="resnet101", train_bn=False, pyramid_size=256, anchor_stride=1,
                 anchors_per_location=3, rpn_conv_channels=512, pool_size=7, mask_pool_size=14,
                 fc_layers_size=1024, mask_head_channels=256, post_nms_rois_training=2000,
                 post_nms_rois_inference=1000, rpn_nms_threshold=0.7, pre_nms_limit=6000,
                 rpn_bbox_std_dev=(0.1, 0.1, 0.2, 0.2), detection_max_instances=100,
                 detection_min_confidence=0.7, detection_nms_threshold=0.3,
                 bbox_std_dev=(0.1, 0.1, 0.2, 0.2), use_gather=False, name="mask_rcnn", **kwargs):
        if not isinstance(num_classes, numbers.Integral):
            raise TypeError("MaskRCNNNet takes explicit arguments; build one from a Config with "
                            "MaskRCNNNet.from_config(config, mode)")
        if mode not in ("training", "inference"):
            raise ValueError(f"mode must be 'training' or 'inference', not {mode!r}")
        super().__init__(name=name, **kwargs)
        self.mode = mode
        self.num_classes = int(num_classes)
        ints = dict(pyramid_size=pyramid_size, anchor_stride=anchor_stride,
                    anchors_per_location=anchors_per_location, rpn_conv_channels=rpn_conv_channels,
                    pool_size=pool_size, mask_pool_size=mask_pool_size,
                    fc_layers_size=fc_layers_size, mask_head_channels=mask_head_channels,
                    post_nms_rois_training=post_nms_rois_training,
                    post_nms_rois_inference=post_nms_rois_inference, pre_nms_limit=pre_nms_limit,
                    detection_max_instances=detection_max_instances)
        self._net_args = dict(
            num_classes=self.num_classes, mode=mode,
            image_shape=tuple(None if v is None else int(v) for v in image_shape),
            backbone=backbone, train_bn=None if train_bn is None else bool(train_bn),
            **{k: int(v) for k, v in ints.items()},
            rpn_nms_threshold=float(rpn_nms_threshold), rpn_bbox_std_dev=_floats(rpn_bbox_std_dev),
            detection_min_confidence=float(detection_min_confidence),
            detection_nms_threshold=float(detection_nms_threshold),
            bbox_std_dev=_floats(bbox_std_dev), use_gather=bool(use_gather))
        self._build_parts(**self._net_args)

    def _build_parts(self, num_classes, mode, image_shape, backbone, train_bn, pyramid_size,
                     pool_size, mask_pool_size, use_gather, **a):
        """The sub-models and graph layers, in the order that fixes ``weights``' order."""
        self.feature_model = build_feature_model(
            image_shape, backbone, train_bn, pyramid_size, a["anchor_stride"],
            a["anchors_per_location"], a["rpn_conv_channels"])
        self.box_head = build_box_head(pool_size, pyramid_size, num_classes, a["fc_layers_size"],
                                       train_bn)
        self.mask_head = build_mask_head(mask_pool_size, pyramid_size, num_classes,
                                         a["mask_head_channels"], train_bn)
        proposal_count = a["post_nms_rois_" + mode]
        self.proposals = ProposalLayer(proposal_count, a["rpn_nms_threshold"], a["pre_nms_limit"],
                                       a["rpn_bbox_std_dev"], name="ROI", dtype="float32")
        self.roi_align_box = PyramidROIAlign((pool_size,) * 2, name="roi_align_classifier",
                                             dtype="float32", use_gather=use_gather)
        self.roi_align_mask = PyramidROIAlign((mask_pool_size,) * 2, name="roi_align_mask",
                                              dtype="float32", use_gather=use_gather)
        self.detection = DetectionLayer(a["detection_max_instances"], a["detection_min_confidence"],
                                        a["detection_nms_threshold"], a["bbox_std_dev"],
                                        name="mrcnn_detection", dtype="float32")

    # ------------------------------------------------------------------ config
    @classmethod
    def from_config(cls, config, mode=None, custom_objects=None):
        """``config``: a dict from ``get_config`` (Keras: ``cls(**config)``), or a mrcnn
        ``Config``, read by ``network_args`` (``mode`` defaults to "inference")."""
        if isinstance(config, dict):
            args = dict(config)
            if mode is not None:
                args["mode"] = mode
            return cls(**args)
        return cls(**network_args(config, mode or "inference"))

    def get_config(self):
        """The explicit arguments, plain values; a callable backbone as its "module:function"
        name (kept as the object when it has none: a lambda or local function)."""
        args = {k: tuple(v) if isinstance(v, (list, tuple)) else v
                for k, v in self._net_args.items()}
        if callable(args["backbone"]):
            try:
                args["backbone"] = callable_name("BACKBONE", args["backbone"])
            except ConfigError:
                pass
        return {"name": self.name, "trainable": self.trainable, **args}

    @property
    def mask_shape(self):
        """(H, W) of the mask head's output: the mask pool upsampled once."""
        return (2 * self._net_args["mask_pool_size"],) * 2

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
        c = self.num_classes
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
