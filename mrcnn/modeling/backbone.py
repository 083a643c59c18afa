"""ResNet backbones with matterport's layer names, so ``mask_rcnn_coco.h5`` loads by name.

``build_backbone(input_image, backbone, train_bn)`` returns [C1, C2, C3, C4, C5] feature maps at
strides 2, 4, 8, 16, 32. Names: ``conv1``/``bn_conv1``; ``res{stage}{block}_branch2a|2b|2c`` with BN
``bn{stage}{block}_branch2a|..``; conv blocks add ``_branch1``. All convs have biases; the stride
sits on the 1x1 ``2a`` conv and on ``branch1``.

``backbone`` (the config's ``BACKBONE``) may be "resnet50", "resnet101", "small" (a narrow
one-block-per-stage ResNet for tests and CPU demos, same names), a callable
``f(input_image, stage5=True, train_bn=...)`` returning the same five tensors, as in
matterport, or that callable's "module:function" name.
"""
from __future__ import annotations

import keras
from keras import layers as KL
from keras import ops

from mrcnn.io.config_checks import resolve_callable
from mrcnn.modeling.conv import FastGradConv2D

# Per stage: (filters of 2a, 2b, 2c), number of blocks. Stage 4 depends on depth.
_STAGES = {
    "resnet50": {2: ([64, 64, 256], 3), 3: ([128, 128, 512], 4), 4: ([256, 256, 1024], 6), 5: ([512, 512, 2048], 3)},
    "resnet101": {2: ([64, 64, 256], 3), 3: ([128, 128, 512], 4), 4: ([256, 256, 1024], 23), 5: ([512, 512, 2048], 3)},
    "small": {2: ([16, 16, 32], 1), 3: ([32, 32, 64], 1), 4: ([64, 64, 128], 1), 5: ([64, 64, 128], 1)},
}
_CONV1_FILTERS = {"resnet50": 64, "resnet101": 64, "small": 16}
BN_EPSILON = 1e-3


@keras.saving.register_keras_serializable(package="mrcnn")
class BatchNorm(KL.BatchNormalization):
    """matterport's BatchNorm: the layer is called with ``training=train_bn`` whatever the caller.

    - ``train_bn=False`` (matterport's default): frozen, moving averages in training and
      inference (detection batches are small). Gamma and beta stay trainable.
    - ``train_bn=True``: batch statistics always, at inference too (matterport's docstring: "set
      layer in training mode even when making inferences"). Moving averages are updated only
      when the caller trains, as in matterport's Keras 2 graph, where only the training function
      ran the updates.
    - ``train_bn=None`` ("the normal mode"): follow the caller's ``training`` flag.

    Keras 3 functional models override a node's stored ``training`` flag with the caller's, so
    the policy has to live in the layer itself.
    """

    def __init__(self, train_bn=False, epsilon=BN_EPSILON, **kwargs):
        super().__init__(epsilon=epsilon, **kwargs)
        self.train_bn = None if train_bn is None else bool(train_bn)

    def call(self, inputs, training=None, mask=None):
        if self.train_bn is None:
            return super().call(inputs, training=bool(training), mask=mask)
        if self.train_bn and not training:
            return self._batch_statistics(inputs)
        return super().call(inputs, training=bool(training) and self.train_bn, mask=mask)

    def _batch_statistics(self, inputs):
        """Normalise [..., C] with this batch's moments, leaving the moving averages alone."""
        x = ops.cast(inputs, "float32") if inputs.dtype in ("float16", "bfloat16") else inputs
        axes = [i for i in range(len(x.shape)) if i != self.axis % len(x.shape)]
        mean, variance = ops.moments(x, axes=axes)
        out = ops.batch_normalization(x, mean, variance, axis=self.axis,
                                      offset=ops.cast(self.beta, x.dtype) if self.center else None,
                                      scale=ops.cast(self.gamma, x.dtype) if self.scale else None,
                                      epsilon=self.epsilon)
        return ops.cast(out, inputs.dtype)

    def get_config(self):
        config = super().get_config()
        config["train_bn"] = self.train_bn
        return config


def _block(x, kernel_size, filters, stage, block, train_bn, strides=None):
    """A bottleneck block; ``strides`` given means a conv block with a projection shortcut."""
    f1, f2, f3 = filters
    conv = f"res{stage}{block}_branch"
    bn = f"bn{stage}{block}_branch"
    shortcut = x
    y = FastGradConv2D(f1, 1, strides=strides or 1, name=conv + "2a", use_bias=True)(x)
    y = BatchNorm(train_bn, name=bn + "2a")(y)
    y = KL.Activation("relu")(y)
    y = FastGradConv2D(f2, kernel_size, padding="same", name=conv + "2b", use_bias=True)(y)
    y = BatchNorm(train_bn, name=bn + "2b")(y)
    y = KL.Activation("relu")(y)
    y = FastGradConv2D(f3, 1, name=conv + "2c", use_bias=True)(y)
    y = BatchNorm(train_bn, name=bn + "2c")(y)
    if strides is not None:
        shortcut = FastGradConv2D(f3, 1, strides=strides, name=conv + "1", use_bias=True)(x)
        shortcut = BatchNorm(train_bn, name=bn + "1")(shortcut)
    y = KL.Add()([y, shortcut])
    return KL.Activation("relu", name=f"res{stage}{block}_out")(y)


def resnet_graph(input_image, architecture, stage5=True, train_bn=False):
    """Build a ResNet on a symbolic image tensor. Returns [C1, C2, C3, C4, C5]."""
    if architecture not in _STAGES:
        raise ValueError(f"BACKBONE={architecture!r} is not one of {sorted(_STAGES)} or a callable")
    x = KL.ZeroPadding2D((3, 3))(input_image)
    x = KL.Conv2D(_CONV1_FILTERS[architecture], 7, strides=2, name="conv1", use_bias=True)(x)
    x = BatchNorm(train_bn, name="bn_conv1")(x)
    x = KL.Activation("relu")(x)
    c1 = x = KL.MaxPooling2D(3, strides=2, padding="same")(x)
    outputs = [c1]
    for stage in (2, 3, 4, 5):
        filters, count = _STAGES[architecture][stage]
        if stage == 5 and not stage5:
            outputs.append(None)
            break
        x = _block(x, 3, filters, stage, "a", train_bn, strides=1 if stage == 2 else 2)
        for i in range(1, count):
            x = _block(x, 3, filters, stage, chr(ord("a") + i), train_bn)
        outputs.append(x)
    return outputs


def build_backbone(input_image, backbone="resnet101", train_bn=False):
    """[C1..C5] for ``backbone``: a built-in name, a callable or its "module:function" name."""
    backbone = resolve_callable("BACKBONE", backbone)
    if callable(backbone):
        return list(backbone(input_image, stage5=True, train_bn=train_bn))
    return resnet_graph(input_image, backbone, stage5=True, train_bn=train_bn)
