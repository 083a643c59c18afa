"""Value checks and conversions for ``mrcnn.config.Config`` (TF-free, never imports the config).

``check_values(c, mode, loss_names)`` lists every problem of a config object as
"KEY=value <what is wrong and how to fix it>"; ``Config.validate`` joins them into one
``ConfigError``. ``plain`` gives a TOML/JSON-safe copy of a value; ``resolve_callable`` and
``callable_name`` turn a "module:function" string into the function and back (BACKBONE,
COMPUTE_BACKBONE_SHAPE; the network's ``get_config`` uses them too).

Why a module of its own: the config class stays readable, and the model side can resolve a
backbone name without importing the config.
"""
import importlib
import math
import numbers
import os

import numpy as np

BUILTIN_BACKBONES = ("resnet50", "resnet101", "small")
RESIZE_MODES = ("none", "square", "pad64", "crop")
_POSITIVE_INTS = (
    "GPU_COUNT", "IMAGES_PER_GPU", "TOP_DOWN_PYRAMID_SIZE", "FPN_CLASSIF_FC_LAYERS_SIZE",
    "RPN_ANCHOR_STRIDE", "RPN_TRAIN_ANCHORS_PER_IMAGE", "PRE_NMS_LIMIT",
    "POST_NMS_ROIS_TRAINING", "POST_NMS_ROIS_INFERENCE", "IMAGE_MIN_DIM", "IMAGE_MAX_DIM",
    "IMAGE_CHANNEL_COUNT", "TRAIN_ROIS_PER_IMAGE", "POOL_SIZE", "MASK_POOL_SIZE",
    "MAX_GT_INSTANCES", "DETECTION_MAX_INSTANCES", "RPN_CONV_CHANNELS", "MASK_HEAD_CHANNELS")
_OPTIONAL_COUNTS = ("STEPS_PER_EPOCH", "VALIDATION_STEPS", "WARMUP_STEPS", "SEED",
                    "KEEP_CHECKPOINTS")
_UNIT_INTERVAL = ("RPN_NMS_THRESHOLD", "DETECTION_MIN_CONFIDENCE", "DETECTION_NMS_THRESHOLD")
_BOOLS = ("USE_MINI_MASK", "USE_RPN_ROIS", "ROI_INCLUDE_GT", "AUGMENT", "XLA_COMPILE")


class ConfigError(ValueError):
    """A config value is invalid; the message names the key, the value and the fix."""


############################################################
#  Callables and plain values
############################################################

def resolve_callable(key, value):
    """"module:function" -> the function (``key`` names it in errors); anything else unchanged."""
    if not (isinstance(value, str) and ":" in value):
        return value
    module_name, _, qualname = value.partition(":")
    try:
        obj = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ConfigError("%s=%r cannot be imported (%s); give 'module:function' of an "
                          "importable module-level function" % (key, value, e)) from e
    if not callable(obj):
        raise ConfigError("%s=%r is not callable; give 'module:function'" % (key, value))
    return obj


def callable_name(key, fn, strict=True):
    """fn -> "module:qualname". ``strict``: raise ConfigError unless the name imports back to fn."""
    name = "%s:%s" % (getattr(fn, "__module__", "?"), getattr(fn, "__qualname__", "?"))
    if strict:
        if "<lambda>" in name or "<locals>" in name or name.startswith("?"):
            raise ConfigError("%s=%r cannot be saved: use a module-level function, which "
                              "is written as 'module:function'" % (key, fn))
        if resolve_callable(key, name) is not fn:
            raise ConfigError("%s=%r does not resolve back from %r; use a module-level "
                              "function" % (key, fn, name))
    return name


def plain(key, value):
    """TOML/JSON-safe copy of a config value (lists, not numpy; callables by name)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):  # check_values accepts NumPy booleans; TOML needs bool
        return bool(value)
    if isinstance(value, np.ndarray):
        return [plain(key, v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [plain(key, v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(key, v) for k, v in value.items()}
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if callable(value):
        return callable_name(key, value)
    raise ConfigError("%s=%r cannot be written to TOML; use numbers, strings, booleans, "
                      "lists or dicts" % (key, value))


############################################################
#  Validation rules
############################################################

def is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def is_num(v):
    return (isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))
            and math.isfinite(v))


def is_seq(v, length=None):
    ok = isinstance(v, (list, tuple, np.ndarray)) and np.ndim(v) == 1
    return ok and (length is None or len(v) == length)


def check_values(c, mode, loss_names):
    """List of problems of config ``c``, each "KEY=value <what is wrong and how to fix it>".

    mode="training" also requires NUM_CLASSES >= 2 and a NAME; ``loss_names`` are the keys
    LOSS_WEIGHTS must have. Topics are checked in a fixed order, so messages keep theirs.
    """
    errors = []

    def bad(key, msg):
        errors.append("%s=%r %s" % (key, getattr(c, key, None), msg))

    for check in (_check_identity, _check_counts, _check_backbone, _check_optimizer,
                  _check_images):
        check(c, mode, bad)
    _check_heads_and_runtime(c, bad, loss_names)
    return errors


def _check_identity(c, mode, bad):
    if c.NAME is not None and not (isinstance(c.NAME, str) and c.NAME
                                   and "/" not in c.NAME and os.sep not in c.NAME):
        bad("NAME", "must be a non-empty string without '/', e.g. NAME = 'balloon'")
    if mode == "training" and c.NAME is None:
        bad("NAME", "must be set for training (it names the log folder), e.g. NAME = 'coco'")
    if not (is_int(c.NUM_CLASSES) and c.NUM_CLASSES >= 1):
        bad("NUM_CLASSES", "must be an integer >= 1 (background counts as a class)")
    elif mode == "training" and c.NUM_CLASSES < 2:
        bad("NUM_CLASSES", "must be >= 2 for training: 1 (background) + your classes, "
            "e.g. NUM_CLASSES = 1 + 1")


def _check_counts(c, mode, bad):
    for key in _POSITIVE_INTS:
        if not (is_int(getattr(c, key)) and getattr(c, key) > 0):
            bad(key, "must be a positive integer")
    for key in _OPTIONAL_COUNTS:
        value = getattr(c, key)
        required = key in ("WARMUP_STEPS", "KEEP_CHECKPOINTS")
        if not ((value is None and not required) or (is_int(value) and value >= 0)):
            bad(key, "must be an integer >= 0" + ("" if required else " or None"))
    for key in _BOOLS:
        if not isinstance(getattr(c, key), (bool, np.bool_)):
            bad(key, "must be true or false")
    if c.TRAIN_BN not in (True, False, None):
        bad("TRAIN_BN", "must be true, false or None")
    if mode == "training" and isinstance(c.USE_RPN_ROIS, (bool, np.bool_)) and not c.USE_RPN_ROIS:
        bad("USE_RPN_ROIS", "is not supported: the heads always train on the RPN's proposals "
            "(matterport's heads-only training on random ROIs is not built); set USE_RPN_ROIS = True")


def _check_backbone(c, mode, bad):
    if not (callable(c.BACKBONE) or c.BACKBONE in BUILTIN_BACKBONES):
        bad("BACKBONE", "must be one of %s, a callable or a 'module:function' string"
            % ", ".join(map(repr, BUILTIN_BACKBONES)))
    if not (c.COMPUTE_BACKBONE_SHAPE is None or callable(c.COMPUTE_BACKBONE_SHAPE)):
        bad("COMPUTE_BACKBONE_SHAPE", "must be None, a callable or a 'module:function' string")
    if not (is_seq(c.BACKBONE_STRIDES, 5) and all(is_int(s) and s > 0
                                                    for s in c.BACKBONE_STRIDES)):
        bad("BACKBONE_STRIDES", "must be 5 positive integers, one per level P2..P6, "
            "e.g. [4, 8, 16, 32, 64]")
    if not (is_seq(c.RPN_ANCHOR_SCALES, 5) and all(is_num(s) and s > 0
                                                     for s in c.RPN_ANCHOR_SCALES)):
        bad("RPN_ANCHOR_SCALES", "must be 5 positive numbers, one per level P2..P6 "
            "(as many as BACKBONE_STRIDES), e.g. (32, 64, 128, 256, 512)")
    if not (is_seq(c.RPN_ANCHOR_RATIOS) and len(c.RPN_ANCHOR_RATIOS) > 0
            and all(is_num(r) and r > 0 for r in c.RPN_ANCHOR_RATIOS)):
        bad("RPN_ANCHOR_RATIOS", "must be a non-empty list of positive numbers, e.g. [0.5, 1, 2]")


def _check_optimizer(c, mode, bad):
    """Thresholds, sampling ratio and the optimizer's settings."""
    for key in _UNIT_INTERVAL:
        if not (is_num(getattr(c, key)) and 0 <= getattr(c, key) <= 1):
            bad(key, "must be a number in [0, 1]")
    if not (is_num(c.ROI_POSITIVE_RATIO) and 0 < c.ROI_POSITIVE_RATIO <= 1):
        bad("ROI_POSITIVE_RATIO", "must be in (0, 1], e.g. 0.33")
    if not (is_num(c.LEARNING_RATE) and c.LEARNING_RATE > 0):
        bad("LEARNING_RATE", "must be a positive number, e.g. 0.001")
    if not (is_num(c.LEARNING_MOMENTUM) and 0 <= c.LEARNING_MOMENTUM < 1):
        bad("LEARNING_MOMENTUM", "must be in [0, 1), e.g. 0.9")
    if not (is_num(c.WEIGHT_DECAY) and c.WEIGHT_DECAY >= 0):
        bad("WEIGHT_DECAY", "must be a number >= 0, e.g. 0.0001")
    if not (c.GRADIENT_CLIP_NORM is None or (is_num(c.GRADIENT_CLIP_NORM)
                                             and c.GRADIENT_CLIP_NORM > 0)):
        bad("GRADIENT_CLIP_NORM", "must be a positive number (e.g. 5.0) or None for no clipping")
    if getattr(c, "GRADIENT_CLIP_MODE", "per_tensor") not in ("per_tensor", "global"):
        bad("GRADIENT_CLIP_MODE", 'must be "per_tensor" (matterport) or "global"')


def _check_images(c, mode, bad):
    """Resizing, divisibility by 64, MEAN_PIXEL per channel, mask shapes."""
    if not (c.IMAGE_MIN_SCALE is None or (is_num(c.IMAGE_MIN_SCALE) and c.IMAGE_MIN_SCALE >= 0)):
        bad("IMAGE_MIN_SCALE", "must be a number >= 0 (0 = no minimum)")
    if c.IMAGE_RESIZE_MODE not in RESIZE_MODES:
        bad("IMAGE_RESIZE_MODE", "must be one of %s" % ", ".join(map(repr, RESIZE_MODES)))
    else:
        sized = {"square": ["IMAGE_MAX_DIM"], "pad64": ["IMAGE_MAX_DIM"],
                 "crop": ["IMAGE_MAX_DIM", "IMAGE_MIN_DIM"]}.get(c.IMAGE_RESIZE_MODE, [])
        for key in sized:
            value = getattr(c, key)
            if is_int(value) and value > 0 and value % 64:
                low = max(64, value // 64 * 64)
                bad(key, "must be divisible by 64 (image size must be dividable by 2 at "
                    "least 6 times), e.g. %d or %d" % (low, value // 64 * 64 + 64))
    if not (is_int(c.IMAGE_CHANNEL_COUNT) and is_seq(c.MEAN_PIXEL, c.IMAGE_CHANNEL_COUNT)
            and all(is_num(v) for v in c.MEAN_PIXEL)):
        bad("MEAN_PIXEL", "must be %r numbers, one per channel (IMAGE_CHANNEL_COUNT)"
            % (c.IMAGE_CHANNEL_COUNT,))
    if not (is_seq(c.MINI_MASK_SHAPE, 2) and all(is_int(v) and v > 0
                                                   for v in c.MINI_MASK_SHAPE)):
        bad("MINI_MASK_SHAPE", "must be 2 positive integers, e.g. (56, 56)")
    if is_int(c.MASK_POOL_SIZE) and not (
            is_seq(c.MASK_SHAPE, 2) and list(c.MASK_SHAPE) == [2 * c.MASK_POOL_SIZE] * 2):
        bad("MASK_SHAPE", "must be [2*MASK_POOL_SIZE, 2*MASK_POOL_SIZE] = [%d, %d] (the mask "
            "head upsamples once)" % (2 * c.MASK_POOL_SIZE, 2 * c.MASK_POOL_SIZE))


def _check_heads_and_runtime(c, bad, loss_names):
    """Box std devs, loss weights, the schedule, precision and data workers."""
    for key in ("BBOX_STD_DEV", "RPN_BBOX_STD_DEV"):
        value = getattr(c, key)
        if not (is_seq(value, 4) and all(is_num(v) and v > 0 for v in value)):
            bad(key, "must be 4 positive numbers, e.g. [0.1, 0.1, 0.2, 0.2]")
    weights = c.LOSS_WEIGHTS
    if not (isinstance(weights, dict) and set(weights) == set(loss_names)
            and all(is_num(v) and v >= 0 for v in weights.values())):
        bad("LOSS_WEIGHTS", "must map exactly %s to finite numbers >= 0"
            % ", ".join(loss_names))
    if c.TRAIN_SCHEDULE is not None:
        _check_schedule(c.TRAIN_SCHEDULE, bad)
    if c.MIXED_PRECISION not in (None, "mixed_float16", "mixed_bfloat16"):
        bad("MIXED_PRECISION", "must be None, 'mixed_float16' or 'mixed_bfloat16'")
    if not (is_int(c.DATA_WORKERS) and c.DATA_WORKERS >= 0):
        bad("DATA_WORKERS", "must be an integer >= 0 (0: threads; N: N worker processes)")


def _check_schedule(schedule, bad):
    fix = ("must be None or a list of stages like [{layers = 'heads', epochs = 20}, "
           "{layers = 'all', epochs = 40, learning_rate = 0.0001}] with increasing epochs")
    if not isinstance(schedule, (list, tuple)) or not schedule:
        return bad("TRAIN_SCHEDULE", fix)
    last = 0
    for stage in schedule:
        if not (isinstance(stage, dict) and {"layers", "epochs"} <= set(stage)
                and set(stage) <= {"layers", "epochs", "learning_rate"}
                and isinstance(stage["layers"], str) and is_int(stage["epochs"])
                and stage["epochs"] > last
                and (is_num(stage.get("learning_rate", 1.0))
                     and stage.get("learning_rate", 1.0) > 0)):
            return bad("TRAIN_SCHEDULE", fix)
        last = stage["epochs"]
