"""Tests for mrcnn.config: matterport defaults, validation, TOML and overrides."""
import math
import sys
import tomllib

import numpy as np
import pytest

from mrcnn.config import Config, ConfigError

DOC_DEFAULTS = dict(
    NAME=None, GPU_COUNT=1, IMAGES_PER_GPU=2, STEPS_PER_EPOCH=1000, VALIDATION_STEPS=50,
    NUM_CLASSES=1, BACKBONE="resnet101", BACKBONE_STRIDES=[4, 8, 16, 32, 64],
    TOP_DOWN_PYRAMID_SIZE=256, FPN_CLASSIF_FC_LAYERS_SIZE=1024,
    RPN_ANCHOR_SCALES=(32, 64, 128, 256, 512), RPN_ANCHOR_RATIOS=[0.5, 1, 2],
    RPN_ANCHOR_STRIDE=1, RPN_NMS_THRESHOLD=0.7, RPN_TRAIN_ANCHORS_PER_IMAGE=256,
    PRE_NMS_LIMIT=6000, POST_NMS_ROIS_TRAINING=2000, POST_NMS_ROIS_INFERENCE=1000,
    USE_MINI_MASK=True, MINI_MASK_SHAPE=(56, 56), IMAGE_RESIZE_MODE="square",
    IMAGE_MIN_DIM=800, IMAGE_MAX_DIM=1024, IMAGE_MIN_SCALE=0, IMAGE_CHANNEL_COUNT=3,
    MEAN_PIXEL=[123.7, 116.8, 103.9], TRAIN_ROIS_PER_IMAGE=200, ROI_POSITIVE_RATIO=0.33,
    POOL_SIZE=7, MASK_POOL_SIZE=14, MASK_SHAPE=[28, 28], MAX_GT_INSTANCES=100,
    RPN_BBOX_STD_DEV=[0.1, 0.1, 0.2, 0.2], BBOX_STD_DEV=[0.1, 0.1, 0.2, 0.2],
    DETECTION_MAX_INSTANCES=100, DETECTION_MIN_CONFIDENCE=0.7, DETECTION_NMS_THRESHOLD=0.3,
    LEARNING_RATE=0.001, LEARNING_MOMENTUM=0.9, WEIGHT_DECAY=0.0001, GRADIENT_CLIP_NORM=5.0,
    LOSS_WEIGHTS={k: 1.0 for k in ("rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss",
                                   "mrcnn_bbox_loss", "mrcnn_mask_loss")},
    TRAIN_BN=False, USE_RPN_ROIS=True,
    RPN_CONV_CHANNELS=512, MASK_HEAD_CHANNELS=256, SEED=None, COMPUTE_BACKBONE_SHAPE=None,
    ROI_INCLUDE_GT=False, WARMUP_STEPS=0, AUGMENT=False, TRAIN_SCHEDULE=None)


def my_backbone(image, stage5=True, train_bn=False):
    """A module-level callable usable as BACKBONE (never called here)."""
    return image


class ShapesConfig(Config):
    NAME = "shapes"
    NUM_CLASSES = 4
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128
    MY_EXTRA = 3  # a user's own key


@pytest.mark.parametrize("key", sorted(DOC_DEFAULTS))
def test_defaults_match_doc(key):
    value = getattr(Config(), key)
    expected = DOC_DEFAULTS[key]
    if isinstance(value, np.ndarray):
        np.testing.assert_allclose(value, expected)
    else:
        assert value == expected and type(value) is type(expected)


def test_derived_attributes():
    c = Config()
    assert c.BATCH_SIZE == 2
    assert isinstance(c.IMAGE_SHAPE, np.ndarray) and list(c.IMAGE_SHAPE) == [1024, 1024, 3]
    assert c.IMAGE_META_SIZE == 13
    c = ShapesConfig().apply_overrides(["IMAGE_RESIZE_MODE=crop", "IMAGE_MIN_DIM=64",
                                        "GPU_COUNT=2", "NUM_CLASSES=81"])
    assert list(c.IMAGE_SHAPE) == [64, 64, 3] and c.BATCH_SIZE == 4 and c.IMAGE_META_SIZE == 93


BAD = [
    ("IMAGE_MAX_DIM", 1000, "divisible by 64"), ("IMAGE_MAX_DIM", 0, "positive"),
    ("IMAGE_RESIZE_MODE", "stretch", "square"), ("NUM_CLASSES", 0, ">= 1"),
    ("NUM_CLASSES", 2.5, "integer"), ("IMAGES_PER_GPU", 0, "positive"),
    ("GPU_COUNT", True, "positive"), ("TRAIN_ROIS_PER_IMAGE", -1, "positive"),
    ("MAX_GT_INSTANCES", 0, "positive"), ("DETECTION_MAX_INSTANCES", "100", "positive"),
    ("POST_NMS_ROIS_TRAINING", 0, "positive"), ("PRE_NMS_LIMIT", 0, "positive"),
    ("POOL_SIZE", 0, "positive"), ("ROI_POSITIVE_RATIO", 0.0, "(0, 1]"),
    ("ROI_POSITIVE_RATIO", 1.5, "(0, 1]"), ("RPN_NMS_THRESHOLD", 1.2, "[0, 1]"),
    ("DETECTION_MIN_CONFIDENCE", -0.1, "[0, 1]"), ("DETECTION_NMS_THRESHOLD", math.nan, "[0, 1]"),
    ("BACKBONE_STRIDES", [4, 8, 16, 32], "5 positive"), ("RPN_ANCHOR_SCALES", (32, 64), "5 positive"),
    ("RPN_ANCHOR_RATIOS", [], "non-empty"), ("MEAN_PIXEL", [1.0, 2.0], "one per channel"),
    ("MASK_SHAPE", [14, 14], "2*MASK_POOL_SIZE"), ("BBOX_STD_DEV", [0.1, 0.1, 0.2], "4 positive"),
    ("RPN_BBOX_STD_DEV", [0.1, 0.1, 0.2, 0.0], "4 positive"),
    ("LOSS_WEIGHTS", {"rpn_class_loss": 1.0}, "exactly"),
    ("LOSS_WEIGHTS", dict(DOC_DEFAULTS["LOSS_WEIGHTS"], mrcnn_mask_loss=-1.0), ">= 0"),
    ("BACKBONE", "resnet18", "resnet50"), ("BACKBONE", "nosuchmodule_xyz:f", "cannot be imported"),
    ("LEARNING_RATE", 0.0, "positive"), ("LEARNING_MOMENTUM", 1.0, "[0, 1)"),
    ("WEIGHT_DECAY", -1e-4, ">= 0"), ("GRADIENT_CLIP_NORM", 0.0, "positive"),
    ("STEPS_PER_EPOCH", -1, ">= 0"), ("SEED", 1.5, ">= 0"), ("USE_MINI_MASK", 1, "true or false"),
    ("TRAIN_BN", "yes", "true, false or None"), ("MINI_MASK_SHAPE", (56,), "2 positive"),
    ("TRAIN_SCHEDULE", [{"layers": "heads", "epochs": 20}, {"layers": "all", "epochs": 10}],
     "increasing"),
    ("NAME", "a/b", "without '/'"), ("IMAGE_MIN_SCALE", -1, ">= 0"),
]


@pytest.mark.parametrize("key,value,fragment", BAD, ids=[b[0] + "-" + repr(b[1])[:12] for b in BAD])
def test_bad_values_rejected_naming_the_key(key, value, fragment):
    cls = type("Bad", (Config,), {key: value})
    with pytest.raises(ConfigError) as err:
        cls()
    msg = str(err.value)
    assert key in msg and fragment in msg


def test_divisible_message_suggests_fix():
    with pytest.raises(ConfigError, match=r"IMAGE_MAX_DIM=1000 must be divisible by 64.*960 or 1024"):
        type("C", (Config,), {"IMAGE_MAX_DIM": 1000})()
    # crop mode checks IMAGE_MIN_DIM; none mode checks neither
    with pytest.raises(ConfigError, match="IMAGE_MIN_DIM=800"):
        type("C", (Config,), {"IMAGE_RESIZE_MODE": "crop"})()
    type("C", (Config,), {"IMAGE_RESIZE_MODE": "none", "IMAGE_MAX_DIM": 1000})()


def test_training_mode_requires_classes_and_name():
    with pytest.raises(ConfigError, match="NUM_CLASSES=1 must be >= 2"):
        type("C", (Config,), {"NAME": "x"})().validate("training")
    with pytest.raises(ConfigError, match="NAME=None"):
        type("C", (Config,), {"NUM_CLASSES": 2})().validate("training")
    ShapesConfig().validate("training")


def test_steps_none_or_zero_allowed():
    c = Config().apply_overrides(["STEPS_PER_EPOCH=0", "VALIDATION_STEPS=None"])
    assert c.STEPS_PER_EPOCH == 0 and c.VALIDATION_STEPS is None


def test_toml_round_trip_exact(tmp_path):
    c = ShapesConfig().apply_overrides([
        "LEARNING_RATE=2e-5", "MEAN_PIXEL=[1.5, 2.25, 3]", "NAME='odd \"name\" \\\\ é'",
        "TRAIN_SCHEDULE=[{layers='heads', epochs=2}, {layers='all', epochs=4, learning_rate=1e-4}]",
        "GRADIENT_CLIP_NORM=None", "SEED=7", "STEPS_PER_EPOCH=None"])
    path = tmp_path / "cfg.toml"
    c.to_toml(path, extra={"git_commit": "abc123", "versions": {"numpy": np.__version__},
                           "weird key": [1, 2.5, "x\n"]})
    raw = tomllib.loads(path.read_text())
    assert raw["run"]["git_commit"] == "abc123" and raw["run"]["weird key"] == [1, 2.5, "x\n"]
    d = ShapesConfig.from_toml(path)
    assert type(d) is ShapesConfig
    assert d.to_dict() == c.to_dict()
    assert d.NAME == 'odd "name" \\\\ é' and d.GRADIENT_CLIP_NORM is None and d.STEPS_PER_EPOCH is None
    assert isinstance(d.MEAN_PIXEL, np.ndarray) and isinstance(d.RPN_ANCHOR_SCALES, tuple)
    assert isinstance(d.LEARNING_RATE, float) and d.LEARNING_RATE == 2e-5
    np.testing.assert_array_equal(d.IMAGE_SHAPE, c.IMAGE_SHAPE)
    assert not [p for p in tmp_path.iterdir() if p.name != "cfg.toml"]  # no temp files left


def test_to_dict_is_plain():
    d = Config().to_dict()
    assert isinstance(d["MEAN_PIXEL"], list) and isinstance(d["RPN_ANCHOR_SCALES"], list)
    assert "BATCH_SIZE" not in d and "IMAGE_SHAPE" not in d
    assert Config.from_dict(d).to_dict() == d


def test_from_toml_config_table_and_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[config]\nIMAGE_MAX_DIM = 512\nNUM_CLASSES = 3\n[run]\nwhatever = 1\n')
    c = Config.from_toml(path, overrides=["IMAGES_PER_GPU=1", "LEARNING_RATE=1"])
    assert c.IMAGE_MAX_DIM == 512 and c.NUM_CLASSES == 3 and c.BATCH_SIZE == 1
    assert c.LEARNING_RATE == 1.0 and isinstance(c.LEARNING_RATE, float)


def test_unknown_keys_suggest_close_matches(tmp_path):
    with pytest.raises(ConfigError, match="Unknown config key IMAGE_MAX_DIMS; did you mean IMAGE_MAX_DIM"):
        Config().apply_overrides(["IMAGE_MAX_DIMS=512"])
    path = tmp_path / "c.toml"
    path.write_text("LEARNIN_RATE = 0.1\n")
    with pytest.raises(ConfigError, match=r"LEARNIN_RATE; did you mean LEARNING_RATE.*c\.toml"):
        Config.from_toml(path)
    # a subclass's own keys are known
    assert ShapesConfig().apply_overrides(["MY_EXTRA=5"]).MY_EXTRA == 5
    with pytest.raises(ConfigError, match="MY_EXTRA"):
        Config().apply_overrides(["MY_EXTRA=5"])


def test_overrides_parse_literals_and_roll_back():
    c = ShapesConfig().apply_overrides(["name=balloon", "RPN_ANCHOR_RATIOS=[1, 2]",
                                        "USE_MINI_MASK=false", "BACKBONE=resnet50"])
    assert c.NAME == "balloon" and c.RPN_ANCHOR_RATIOS == [1, 2] and c.USE_MINI_MASK is False
    assert c.BACKBONE == "resnet50"
    with pytest.raises(ConfigError, match="IMAGE_MAX_DIM=100"):
        c.apply_overrides(["IMAGES_PER_GPU=1", "IMAGE_MAX_DIM=100"])
    assert c.IMAGES_PER_GPU == 2 and c.IMAGE_MAX_DIM == 128 and c.BATCH_SIZE == 2
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        c.apply_overrides(["IMAGE_MAX_DIM"])
    with pytest.raises(ConfigError, match="derived"):
        c.apply_overrides(["BATCH_SIZE=4"])


def test_bad_toml_file_named(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("IMAGE_MAX_DIM = = 3\n")
    with pytest.raises(ConfigError, match="broken.toml"):
        Config.from_toml(path)
    with pytest.raises(ConfigError, match="missing.toml"):
        Config.from_toml(tmp_path / "missing.toml")


def test_callable_backbone_round_trip(tmp_path):
    name = "%s:my_backbone" % __name__
    c = Config().apply_overrides(["BACKBONE=" + name])
    assert c.BACKBONE is my_backbone
    assert c.to_dict()["BACKBONE"] == name
    path = tmp_path / "c.toml"
    c.to_toml(path)
    assert Config.from_toml(path).BACKBONE is my_backbone
    # a function set as a class attribute is unwrapped, not bound to the config
    assert type("C", (Config,), {"BACKBONE": my_backbone})().BACKBONE is my_backbone


def test_lambda_backbone_cannot_be_saved(tmp_path):
    c = type("C", (Config,), {"BACKBONE": staticmethod(lambda x: x)})()
    with pytest.raises(ConfigError, match="BACKBONE=.*module-level function"):
        c.to_toml(tmp_path / "c.toml")
    assert not list(tmp_path.iterdir())


def test_display_prints_every_attribute(capsys):
    ShapesConfig().display()
    out = capsys.readouterr().out
    for key in list(DOC_DEFAULTS) + ["BATCH_SIZE", "IMAGE_SHAPE", "IMAGE_META_SIZE", "MY_EXTRA"]:
        assert "\n" + key + " " in out


def test_no_tensorflow_import():
    # other tests in the session may import TF, so check in a fresh interpreter
    import subprocess
    code = "import mrcnn.config, sys; assert not any(m.startswith(('tensorflow', 'keras')) for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)
