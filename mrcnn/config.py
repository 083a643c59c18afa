"""Mask R-CNN configuration: matterport's ``Config`` plus validation and TOML I/O.

Subclass ``Config`` and override upper-case class attributes, as with
matterport. Every upper-case attribute of the (sub)class is a config key.

TOML layout (read by ``from_toml``, written by ``to_toml``): a flat table of
UPPER_CASE keys at the top level. The keys may instead (or also) sit in a
``[config]`` table; a ``[run]`` table holds run metadata (git commit,
versions...) and is ignored when loading. TOML has no null: the string
"None" stands for Python None (in TOML files and in ``KEY=VALUE`` overrides).

The value checks and conversions live in ``mrcnn.io.config_checks`` (``ConfigError`` too,
re-exported here). The config is read at boundaries: ``MaskRCNNNet.from_config`` for the
network, the trainer and the data pipeline for theirs; layers take explicit arguments.

Never imports TensorFlow or Keras.
"""
import difflib
import os

import numpy as np

from mrcnn.io.config_checks import (BUILTIN_BACKBONES, RESIZE_MODES, ConfigError,  # noqa: F401
                                    callable_name, check_values, plain)
from mrcnn.io.config_checks import resolve_callable as _resolve_name
from mrcnn.io.fsio import atomic_write_bytes
from mrcnn.io.toml_io import TomlValueError, dumps_table

DERIVED_KEYS = ("BATCH_SIZE", "IMAGE_SHAPE", "IMAGE_META_SIZE")
# The five losses (the keys of LOSS_WEIGHTS); the training graph and logs use this order.
LOSS_NAMES = ("rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss",
              "mrcnn_bbox_loss", "mrcnn_mask_loss")


class Config:
    """Base configuration class (matterport defaults, every one). Subclass and override.

    Extra attributes beyond matterport's (their defaults reproduce matterport's behaviour; the
    CLIs' recipes in configs/*.toml change some):
      RPN_CONV_CHANNELS: channels of the shared RPN conv (512 in the COCO weights).
      MASK_HEAD_CHANNELS: channels of the mask head convs (256 in the COCO weights).
      SEED: int seed for weights init, sampling and augmentation; None = random. When set,
        ``train()`` also turns on TensorFlow's op determinism (same machine, same numbers).
      ROI_INCLUDE_GT: add the ground-truth boxes to the proposals when training (False as
        in matterport; configs/*.toml turn it on: a positive ROI per GT box from step 1).
      WARMUP_STEPS: linear learning-rate warm-up steps at the start of training.
      AUGMENT: built-in augmentation (flips, scale jitter) on or off.
      KEEP_CHECKPOINTS: epoch checkpoints kept, the newest N plus the best; 0 = all (matterport).
      GRADIENT_CLIP_MODE: "per_tensor" (matterport: Keras 2's ``clipnorm`` clips each
        gradient tensor to GRADIENT_CLIP_NORM) or "global" (the norm over all tensors).
      MIXED_PRECISION: None, "mixed_float16" (GPUs; loss scaling on) or "mixed_bfloat16".
        None here; train.py picks "mixed_bfloat16" on CPU hosts with AMX when it is unset.
      DATA_WORKERS: 0 (threads) or N: training samples prepared in N forked processes.
      XLA_COMPILE: compile the training step with XLA (static-shape targets, gather ROIAlign).
      TRAIN_SCHEDULE: None, or a list of stages {"layers": str, "epochs": int
        (cumulative, increasing), optional "learning_rate": float}.
    STEPS_PER_EPOCH / VALIDATION_STEPS may be None or 0: one pass over the data.
    BACKBONE may be "resnet50", "resnet101", "small", a callable, or a
    "module:function" string, resolved by import on validation.
    """
    NAME = None
    GPU_COUNT = 1
    IMAGES_PER_GPU = 2
    STEPS_PER_EPOCH = 1000
    VALIDATION_STEPS = 50
    BACKBONE = "resnet101"
    COMPUTE_BACKBONE_SHAPE = None
    BACKBONE_STRIDES = [4, 8, 16, 32, 64]
    FPN_CLASSIF_FC_LAYERS_SIZE = 1024
    TOP_DOWN_PYRAMID_SIZE = 256
    NUM_CLASSES = 1
    RPN_ANCHOR_SCALES = (32, 64, 128, 256, 512)
    RPN_ANCHOR_RATIOS = [0.5, 1, 2]
    RPN_ANCHOR_STRIDE = 1
    RPN_NMS_THRESHOLD = 0.7
    RPN_TRAIN_ANCHORS_PER_IMAGE = 256
    PRE_NMS_LIMIT = 6000
    POST_NMS_ROIS_TRAINING = 2000
    POST_NMS_ROIS_INFERENCE = 1000
    USE_MINI_MASK = True
    MINI_MASK_SHAPE = (56, 56)
    IMAGE_RESIZE_MODE = "square"
    IMAGE_MIN_DIM = 800
    IMAGE_MAX_DIM = 1024
    IMAGE_MIN_SCALE = 0
    IMAGE_CHANNEL_COUNT = 3
    MEAN_PIXEL = np.array([123.7, 116.8, 103.9])
    TRAIN_ROIS_PER_IMAGE = 200
    ROI_POSITIVE_RATIO = 0.33
    POOL_SIZE = 7
    MASK_POOL_SIZE = 14
    MASK_SHAPE = [28, 28]
    MAX_GT_INSTANCES = 100
    RPN_BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])
    BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])
    DETECTION_MAX_INSTANCES = 100
    DETECTION_MIN_CONFIDENCE = 0.7
    DETECTION_NMS_THRESHOLD = 0.3
    LEARNING_RATE = 0.001
    LEARNING_MOMENTUM = 0.9
    WEIGHT_DECAY = 0.0001
    LOSS_WEIGHTS = {"rpn_class_loss": 1., "rpn_bbox_loss": 1., "mrcnn_class_loss": 1.,
                    "mrcnn_bbox_loss": 1., "mrcnn_mask_loss": 1.}
    USE_RPN_ROIS = True
    TRAIN_BN = False
    GRADIENT_CLIP_NORM = 5.0
    # Extras (see the class docstring).
    RPN_CONV_CHANNELS = 512
    MASK_HEAD_CHANNELS = 256
    SEED = None
    ROI_INCLUDE_GT = False
    WARMUP_STEPS = 0
    AUGMENT = False
    KEEP_CHECKPOINTS = 0
    GRADIENT_CLIP_MODE = "per_tensor"
    TRAIN_SCHEDULE = None
    MIXED_PRECISION = None
    DATA_WORKERS = 0
    XLA_COMPILE = False

    def __init__(self):
        self.validate()
        self.derive()

    # ------------------------------------------------------------ derived
    def derive(self):
        """(Re)compute BATCH_SIZE, IMAGE_SHAPE (np.array) and IMAGE_META_SIZE."""
        self.BATCH_SIZE = self.IMAGES_PER_GPU * self.GPU_COUNT
        side = self.IMAGE_MIN_DIM if self.IMAGE_RESIZE_MODE == "crop" else self.IMAGE_MAX_DIM
        self.IMAGE_SHAPE = np.array([side, side, self.IMAGE_CHANNEL_COUNT])
        # image_id(1) + original shape(3) + shape(3) + window(4) + scale(1) + classes
        self.IMAGE_META_SIZE = 1 + 3 + 3 + 4 + 1 + self.NUM_CLASSES

    def keys(self):
        """Sorted config keys: upper-case attributes, derived ones excluded."""
        return sorted(a for a in dir(self)
                      if a.isupper() and not a.startswith("_") and a not in DERIVED_KEYS)

    def display(self):
        """Print every attribute, derived ones included (matterport format)."""
        print("\nConfigurations:")
        for key in sorted(set(self.keys()) | set(DERIVED_KEYS)):
            value = getattr(self, key, None)
            if callable(value):
                value = callable_name(key, value, strict=False)
            print("{:30} {}".format(key, value))
        print("\n")

    # ------------------------------------------------------------ validation
    def validate(self, mode=None):
        """Check every value; raise one ConfigError listing all problems.

        mode="training" also requires NUM_CLASSES >= 2 and a NAME. Resolves a
        "module:function" BACKBONE / COMPUTE_BACKBONE_SHAPE to the callable.
        """
        errors = []
        for key in ("BACKBONE", "COMPUTE_BACKBONE_SHAPE"):
            try:
                setattr(self, key, _resolve_callable(key, getattr(self, key)))
            except ConfigError as e:
                errors.append(str(e))
        errors.extend(check_values(self, mode, LOSS_NAMES))
        if errors:
            raise ConfigError("Invalid config %s:\n  - %s"
                              % (type(self).__name__, "\n  - ".join(errors)))
        return self

    # ------------------------------------------------------------ dict / TOML
    def to_dict(self):
        """Config keys -> JSON/TOML-safe values (lists, not numpy; callables as
        "module:qualname"; derived keys excluded)."""
        return {key: plain(key, getattr(self, key)) for key in self.keys()}

    @classmethod
    def from_dict(cls, d):
        """A validated ``cls`` instance with the values of ``d`` applied."""
        config = cls()
        config.update(d)
        return config

    def update(self, d, source=None):
        """Set several keys at once, then re-derive and re-validate; on error the
        config is left unchanged. ``source`` names the origin in error messages."""
        known = self.keys()
        old = {}
        try:
            for key, value in d.items():
                key = _check_key(key, known, source)
                old.setdefault(key, self.__dict__.get(key, _MISSING))
                setattr(self, key, self._coerce(key, value))
            self.validate()
        except ConfigError:
            for key, value in old.items():
                if value is _MISSING:
                    delattr(self, key)
                else:
                    setattr(self, key, value)
            raise
        self.derive()
        return self

    def apply_overrides(self, overrides):
        """Apply ["KEY=VALUE", ...]; VALUE is a TOML literal (e.g. 512, 0.5,
        [1, 2], true, "text") and falls back to a bare string."""
        parsed = {}
        for item in overrides or ():
            if "=" not in item:
                raise ConfigError("Override %r must look like KEY=VALUE, e.g. IMAGE_MAX_DIM=512"
                                  % (item,))
            key, text = item.split("=", 1)
            parsed[key.strip().upper()] = _parse_literal(text.strip())
        return self.update(parsed, source="overrides")

    @classmethod
    def from_toml(cls, path, overrides=None):
        """Load a TOML file (see the module docstring), then apply overrides."""
        import tomllib
        path = os.fspath(path)
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as e:
            raise ConfigError("Cannot read config file %s: %s" % (path, e)) from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError("Config file %s is not valid TOML: %s" % (path, e)) from e
        values = {k: v for k, v in data.items() if k not in ("config", "run")}
        for key, value in data.get("config", {}).items():
            if key in values:
                raise ConfigError("Config file %s sets %s both at the top level and in "
                                  "[config]; keep one" % (path, key))
            values[key] = value
        config = cls()
        config.update(values, source=path)
        if overrides:
            config.apply_overrides(overrides)
        return config

    def to_toml(self, path, extra=None):
        """Write the config (and ``extra`` as a [run] table) atomically to ``path``."""
        text = ("# Mask R-CNN config (%s). Load with Config.from_toml(path).\n"
                % type(self).__name__)
        for key in DERIVED_KEYS:
            text += "# derived: %s = %s\n" % (key, plain(key, getattr(self, key)))
        try:
            text += dumps_table(self.to_dict())
            if extra:
                text += "\n[run]\n" + dumps_table(extra)
        except TomlValueError as e:
            raise ConfigError(str(e)) from None
        path = os.fspath(path)
        atomic_write_bytes(path, text.encode("utf-8"))
        return path

    def _coerce(self, key, value):
        """Give ``value`` the container type of the current value (tuple,
        np.array, float), so loaded configs equal the class defaults' types."""
        if isinstance(value, str) and value in ("None", "none"):
            return None
        current = getattr(self, key, None)
        if isinstance(value, (list, tuple)):
            if isinstance(current, np.ndarray):
                try:
                    return np.array(value, dtype=float)
                except (TypeError, ValueError):
                    return list(value)
            if isinstance(current, tuple):
                return tuple(value)
            return list(value)
        if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value


_MISSING = object()


def _check_key(key, known, source):
    if key in DERIVED_KEYS:
        raise ConfigError("%s is derived (from IMAGES_PER_GPU, GPU_COUNT, IMAGE_*_DIM, "
                          "IMAGE_CHANNEL_COUNT, NUM_CLASSES); set those instead" % key)
    if key not in known:
        where = " (in %s)" % source if source else ""
        close = difflib.get_close_matches(str(key).upper(), known, n=3, cutoff=0.6)
        hint = ("did you mean %s?" % ", ".join(close)) if close else \
            "known keys: %s." % ", ".join(known)
        raise ConfigError("Unknown config key %s; %s%s" % (key, hint, where))
    return key


def _parse_literal(text):
    """A TOML literal, or the bare text when it is not one."""
    import tomllib
    try:
        return tomllib.loads("v = " + text)["v"]
    except tomllib.TOMLDecodeError:
        return text


def _resolve_callable(key, value):
    """"module:function" -> the function; bound methods (a function stored as a
    class attribute) are unwrapped; anything else is returned unchanged."""
    if getattr(value, "__func__", None) is not None and isinstance(
            getattr(value, "__self__", None), Config):
        return value.__func__
    return _resolve_name(key, value)


resolve_callable = _resolve_callable  # public name
