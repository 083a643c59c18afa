"""The box head and the mask head, applied per ROI with matterport's layer names.

matterport wrapped these layers in TimeDistributed over [B, R, ...]; here the ROIs of the
whole batch are flattened to [N, ...] first, which is the same computation per ROI and lets
the mask head run on a variable number of ROIs (positives only in training, detections only
at inference). Weight shapes are unchanged, so ``mask_rcnn_coco.h5`` loads as is.
"""
from __future__ import annotations

import keras
from keras import layers as KL
from keras import ops

from mrcnn.modeling.backbone import BatchNorm
from mrcnn.modeling.conv import FastGradConv2D


@keras.saving.register_keras_serializable(package="mrcnn")
class WholeInputConv2D(KL.Conv2D):
    """A 'valid', stride-1 Conv2D whose kernel covers its whole input (the box head's 7x7 conv
    on 7x7 ROIs, the 1x1 conv on 1x1), computed as one matmul: [N, kh*kw*Cin] @ [kh*kw*Cin, Cout].

    Same kernel [kh, kw, Cin, Cout] and bias as ``Conv2D``, so weight files are unchanged. Why:
    TensorFlow's CPU Conv2DBackpropInput/Filter for this shape took 19 s of a 17 s training step
    (summed over 2 threads) where the matmul's gradient takes ~0.05 s. Other input sizes fall
    back to the convolution.
    """

    def convolution_op(self, inputs, kernel):
        kh, kw, cin, cout = kernel.shape
        if (self.padding == "valid" and tuple(self.strides) == (1, 1) and self.data_format == "channels_last"
                and tuple(inputs.shape[1:3]) == (kh, kw) and tuple(self.dilation_rate) == (1, 1)):
            flat = ops.reshape(inputs, (-1, kh * kw * cin))
            out = ops.matmul(flat, ops.reshape(kernel, (kh * kw * cin, cout)))
            return ops.reshape(out, (-1, 1, 1, cout))
        return super().convolution_op(inputs, kernel)


def build_box_head(pool_size, depth, num_classes, fc_size=1024, train_bn=False):
    """Sub-model [N, pool, pool, depth] -> (logits [N, C], probs [N, C], deltas [N, C, 4])."""
    x_in = keras.Input(shape=(pool_size, pool_size, depth), name="input_box_head")
    x = WholeInputConv2D(fc_size, pool_size, padding="valid", name="mrcnn_class_conv1")(x_in)
    x = BatchNorm(train_bn, name="mrcnn_class_bn1")(x)
    x = KL.Activation("relu")(x)
    x = WholeInputConv2D(fc_size, 1, name="mrcnn_class_conv2")(x)
    x = BatchNorm(train_bn, name="mrcnn_class_bn2")(x)
    x = KL.Activation("relu")(x)
    shared = KL.Reshape((fc_size,), name="pool_squeeze")(x)
    logits = KL.Dense(num_classes, name="mrcnn_class_logits")(shared)
    # Output activations in float32 under mixed precision (float16 saturates sigmoid/softmax early).
    probs = KL.Activation("softmax", name="mrcnn_class", dtype="float32")(logits)
    x = KL.Dense(num_classes * 4, name="mrcnn_bbox_fc")(shared)
    deltas = KL.Reshape((num_classes, 4), name="mrcnn_bbox")(x)
    return keras.Model(x_in, [logits, probs, deltas], name="box_head")


def build_mask_head(pool_size, depth, num_classes, channels=256, train_bn=False):
    """Sub-model [N, pool, pool, depth] -> sigmoid masks [N, 2*pool, 2*pool, C]."""
    x_in = keras.Input(shape=(pool_size, pool_size, depth), name="input_mask_head")
    x = x_in
    for i in range(1, 5):
        x = FastGradConv2D(channels, 3, padding="same", name=f"mrcnn_mask_conv{i}")(x)
        x = BatchNorm(train_bn, name=f"mrcnn_mask_bn{i}")(x)
        x = KL.Activation("relu")(x)
    x = KL.Conv2DTranspose(channels, 2, strides=2, activation="relu", name="mrcnn_mask_deconv")(x)
    x = FastGradConv2D(num_classes, 1, activation="sigmoid", name="mrcnn_mask", dtype="float32")(x)
    return keras.Model(x_in, x, name="mask_head")


# As FastGradConv2D (mrcnn/modeling/conv.py): matterport's class-name filters see a Conv2D.
WholeInputConv2D.__name__ = "Conv2D"
