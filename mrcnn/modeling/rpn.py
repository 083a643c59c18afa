"""The shared region proposal network, a sub-model named ``rpn_model`` applied to P2..P6.

Per location it predicts, for each of ``anchors_per_location`` anchors (in ratio order),
2 class logits (background, object) and 4 box deltas. Outputs are flattened so that anchor
order is row-major position, then ratio: the order of ``mrcnn.structures.anchors``.
"""
from __future__ import annotations

import keras
from keras import layers as KL
from keras import ops

from mrcnn.modeling.conv import FastGradConv2D


def build_rpn_model(anchor_stride, anchors_per_location, depth, conv_channels=512):
    """Sub-model: [B, h, w, depth] -> (logits [B, h*w*A, 2], probs [B, h*w*A, 2], deltas [B, h*w*A, 4])."""
    feature_map = keras.Input(shape=(None, None, depth), name="input_rpn_feature_map")
    shared = FastGradConv2D(conv_channels, 3, padding="same", activation="relu",
                            strides=anchor_stride, name="rpn_conv_shared")(feature_map)
    x = FastGradConv2D(2 * anchors_per_location, 1, padding="valid", name="rpn_class_raw")(shared)
    logits = KL.Reshape((-1, 2))(x)
    probs = KL.Activation("softmax", name="rpn_class_xxx", dtype="float32")(logits)
    x = FastGradConv2D(4 * anchors_per_location, 1, padding="valid", name="rpn_bbox_pred")(shared)
    deltas = KL.Reshape((-1, 4))(x)
    return keras.Model(feature_map, [logits, probs, deltas], name="rpn_model")


def apply_rpn(rpn_model, feature_maps):
    """Run the shared RPN on every level and concatenate along the anchor axis."""
    outs = [rpn_model(p) for p in feature_maps]
    return [ops.concatenate([o[i] for o in outs], axis=1) for i in range(3)]
