"""Shared helpers for the model-core tests: tiny configs, a layer-config round trip, the
documented ``mask_rcnn_coco.h5`` layout, a custom backbone and a tiny model with random weights.

Imports TensorFlow/Keras lazily so test modules that only need ``tiny_config`` stay light.
"""
from __future__ import annotations

import string

import numpy as np

from mrcnn.config import Config


class TinyConfig(Config):
    """A few-thousand-parameter Mask R-CNN that builds and runs in about a second on a CPU."""
    NAME = "tiny"
    BACKBONE = "small"
    IMAGES_PER_GPU = 1
    NUM_CLASSES = 4
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 128
    TOP_DOWN_PYRAMID_SIZE = 32
    RPN_CONV_CHANNELS = 32
    FPN_CLASSIF_FC_LAYERS_SIZE = 64
    MASK_HEAD_CHANNELS = 16
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    PRE_NMS_LIMIT = 500
    POST_NMS_ROIS_INFERENCE = 64
    POST_NMS_ROIS_TRAINING = 64
    TRAIN_ROIS_PER_IMAGE = 32
    DETECTION_MAX_INSTANCES = 20
    DETECTION_MIN_CONFIDENCE = 0.0


def tiny_config(**overrides):
    """A validated TinyConfig instance; ``overrides`` are upper-case attributes (class-level,
    as a user's subclass would set them), e.g. ``tiny_config(NUM_CLASSES=3, TRAIN_BN=True)``."""
    cls = type("TinyConfigVariant", (TinyConfig,), dict(overrides))
    return cls()


def check_layer_config_roundtrip(layer):
    """get_config -> from_config gives an equal config, and the class is registered with
    Keras serialisation (serialize/deserialize by name). Returns the rebuilt layer."""
    import keras

    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert type(clone) is type(layer)
    assert clone.get_config() == config
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(revived) is type(layer)
    assert revived.get_config() == config
    return clone


# ---------------------------------------------------------------- the documented weight layout
_BN = ("gamma", "beta", "moving_mean", "moving_variance")
_STAGES = {2: ([64, 64, 256], 3), 3: ([128, 128, 512], 4), 5: ([512, 512, 2048], 3)}


def resnet_layout(architecture="resnet101"):
    """[(layer, [(weight, shape), ...]), ...] of the backbone, written from the compat doc."""
    stage4_blocks = {"resnet50": 6, "resnet101": 23}[architecture]
    stages = dict(_STAGES)
    stages[4] = ([256, 256, 1024], stage4_blocks)
    out = [("conv1", [("kernel", (7, 7, 3, 64)), ("bias", (64,))]),
           ("bn_conv1", [(w, (64,)) for w in _BN])]
    channels = 64
    for stage in (2, 3, 4, 5):
        (f1, f2, f3), blocks = stages[stage]
        for letter in string.ascii_lowercase[:blocks]:
            convs = [("2a", (1, 1, channels, f1)), ("2b", (3, 3, f1, f2)), ("2c", (1, 1, f2, f3))]
            if letter == "a":
                convs.append(("1", (1, 1, channels, f3)))
            for branch, shape in convs:
                out.append((f"res{stage}{letter}_branch{branch}", [("kernel", shape), ("bias", shape[-1:])]))
                out.append((f"bn{stage}{letter}_branch{branch}", [(w, shape[-1:]) for w in _BN]))
            channels = f3
    return out


def fpn_layout(depth=256):
    out = [(f"fpn_c{i}p{i}", [("kernel", (1, 1, c, depth)), ("bias", (depth,))])
           for i, c in ((5, 2048), (4, 1024), (3, 512), (2, 256))]
    out += [(f"fpn_p{i}", [("kernel", (3, 3, depth, depth)), ("bias", (depth,))]) for i in (2, 3, 4, 5)]
    return out


RPN_LAYOUT = [("rpn_conv_shared", [("kernel", (3, 3, 256, 512)), ("bias", (512,))]),
              ("rpn_class_raw", [("kernel", (1, 1, 512, 6)), ("bias", (6,))]),
              ("rpn_bbox_pred", [("kernel", (1, 1, 512, 12)), ("bias", (12,))])]


def heads_layout(num_classes=81):
    c = num_classes
    out = [("mrcnn_class_conv1", [("kernel", (7, 7, 256, 1024)), ("bias", (1024,))]),
           ("mrcnn_class_bn1", [(w, (1024,)) for w in _BN]),
           ("mrcnn_class_conv2", [("kernel", (1, 1, 1024, 1024)), ("bias", (1024,))]),
           ("mrcnn_class_bn2", [(w, (1024,)) for w in _BN]),
           ("mrcnn_class_logits", [("kernel", (1024, c)), ("bias", (c,))]),
           ("mrcnn_bbox_fc", [("kernel", (1024, 4 * c)), ("bias", (4 * c,))])]
    for i in range(1, 5):
        out.append((f"mrcnn_mask_conv{i}", [("kernel", (3, 3, 256, 256)), ("bias", (256,))]))
        out.append((f"mrcnn_mask_bn{i}", [(w, (256,)) for w in _BN]))
    out.append(("mrcnn_mask_deconv", [("kernel", (2, 2, 256, 256)), ("bias", (256,))]))
    out.append(("mrcnn_mask", [("kernel", (1, 1, 256, c)), ("bias", (c,))]))
    return out


def coco_layout(num_classes=81, architecture="resnet101"):
    """Every weight group of matterport's COCO model, in file form:
    [(group, [(weight_name, shape), ...])] with weight names like ``conv1/kernel:0`` and the
    nested ``rpn_model`` group holding ``rpn_conv_shared/kernel:0`` etc."""
    flat = resnet_layout(architecture) + fpn_layout()
    groups = [(name, [(f"{name}/{w}:0", s) for w, s in ws]) for name, ws in flat]
    groups.append(("rpn_model", [(f"{sub}/{w}:0", s) for sub, ws in RPN_LAYOUT for w, s in ws]))
    groups += [(name, [(f"{name}/{w}:0", s) for w, s in ws]) for name, ws in heads_layout(num_classes)]
    return groups


# ---------------------------------------------------------------- a user-style custom backbone
def custom_backbone(input_image, stage5=True, train_bn=False):
    """A matterport-signature backbone callable: plain strided convs, C1..C5 at strides 2..32."""
    from keras import layers as KL

    from mrcnn.modeling.backbone import BatchNorm

    x = input_image
    outputs = []
    for i, filters in enumerate((8, 16, 24, 32, 40), start=1):
        x = KL.Conv2D(filters, 3, strides=2, padding="same", name=f"custom_conv{i}")(x)
        x = BatchNorm(train_bn, name=f"custom_bn{i}")(x)
        x = KL.Activation("relu")(x)
        outputs.append(x)
    if not stage5:
        outputs[-1] = None
    return outputs


# ---------------------------------------------------------------- tiny models
def tiny_model(config=None, model_dir="/tmp/mrcnn-test-logs", seed=0, foreground=True):
    """MaskRCNN(mode="inference") on a tiny config with seeded random weights.

    ``foreground`` tames the random heads (see ``tame_random_heads``) so that detect() gives
    detections of several classes with distinct scores and boxes near the anchors.
    """
    import keras

    from mrcnn.model import MaskRCNN

    keras.utils.set_random_seed(seed)
    model = MaskRCNN(mode="inference", config=config or tiny_config(), model_dir=str(model_dir))
    if foreground:
        tame_random_heads(model, seed=seed)
    return model


def tame_random_heads(model, seed=0):
    """Random features are large (std ~10), so random heads saturate every softmax (many tied
    scores of exactly 1.0) and predict huge box deltas. Here: small RPN and class kernels
    (class kernel columns centred so no class wins everywhere), a background bias of -20 so
    background never wins, and constant box deltas (zero kernels, small random biases)."""
    rng = np.random.default_rng(seed)
    net = model.keras_model
    for name in ("rpn_bbox_pred", "mrcnn_bbox_fc"):
        layer = net.get_layer(name)
        kernel, bias = layer.get_weights()
        layer.set_weights([np.zeros_like(kernel), rng.normal(0, 0.5, bias.shape).astype(np.float32)])
    layer = net.get_layer("rpn_class_raw")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel * 0.02, bias])
    layer = net.get_layer("mrcnn_class_logits")
    kernel, bias = layer.get_weights()
    kernel = rng.normal(0, 0.02, kernel.shape).astype(np.float32)
    kernel -= kernel.mean(axis=0, keepdims=True)
    bias = np.zeros_like(bias)
    bias[0] = -20.0
    layer.set_weights([kernel, bias])


def random_image(height, width, seed=0):
    """uint8 RGB [height, width, 3] noise with a few bright rectangles."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    for _ in range(3):
        y, x = rng.integers(0, height // 2), rng.integers(0, width // 2)
        image[y:y + height // 3, x:x + width // 3] = rng.integers(0, 256, 3, dtype=np.uint8)
    return image
