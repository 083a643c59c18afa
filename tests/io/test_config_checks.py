"""mrcnn.io.config_checks, called directly (tests/matterport/test_config.py checks each rule
through ``Config.validate``): check_values on a plain object, the type predicates, the
schedule rule, resolve_callable / callable_name and plain."""
import math
import os.path
import types

import numpy as np
import pytest

from mrcnn.config import LOSS_NAMES, Config
from mrcnn.io import config_checks as cc
from mrcnn.io.config_checks import ConfigError


def _values(**changes):
    """A plain namespace with Config()'s values (check_values never needs the class)."""
    base = {k: getattr(Config, k) for k in dir(Config) if k.isupper()}
    base.update(NAME="shapes", NUM_CLASSES=4)
    base.update(changes)
    return types.SimpleNamespace(**base)


def test_valid_values_have_no_problems():
    assert cc.check_values(_values(), "training", LOSS_NAMES) == []
    assert cc.check_values(_values(NAME=None, NUM_CLASSES=1), "inference", LOSS_NAMES) == []


def test_every_problem_listed_in_topic_order():
    c = _values(NAME=None, NUM_CLASSES=1, POOL_SIZE=0, BACKBONE="vgg", LEARNING_RATE=-1.0,
                IMAGE_MAX_DIM=1000, DATA_WORKERS=-2)
    errors = cc.check_values(c, "training", LOSS_NAMES)
    assert [e.split("=")[0] for e in errors] == ["NAME", "NUM_CLASSES", "POOL_SIZE", "BACKBONE",
                                                 "LEARNING_RATE", "IMAGE_MAX_DIM", "DATA_WORKERS"]
    assert errors[1] == ("NUM_CLASSES=1 must be >= 2 for training: 1 (background) + your classes, "
                         "e.g. NUM_CLASSES = 1 + 1")
    assert errors[5].startswith("IMAGE_MAX_DIM=1000 must be divisible by 64") and "960 or 1024" in errors[5]
    assert cc.check_values(c, "inference", LOSS_NAMES)[0].startswith("POOL_SIZE=0")


@pytest.mark.parametrize("key,value", [
    ("GRADIENT_CLIP_MODE", "norm"), ("MIXED_PRECISION", "float16"), ("DATA_WORKERS", 1.0),
    ("WARMUP_STEPS", None), ("KEEP_CHECKPOINTS", -1), ("XLA_COMPILE", "no"),
    ("COMPUTE_BACKBONE_SHAPE", "resnet50"), ("IMAGE_MIN_DIM", 100),   # crop: the min dim too
    ("LOSS_WEIGHTS", {**Config.LOSS_WEIGHTS, "extra_loss": 1.0}),
    ("LOSS_WEIGHTS", {**Config.LOSS_WEIGHTS, "rpn_class_loss": math.inf}),
])
def test_each_rule_names_its_key(key, value):
    c = _values(**{key: value})
    if key == "IMAGE_MIN_DIM":
        c.IMAGE_RESIZE_MODE = "crop"
    (error,) = cc.check_values(c, "inference", LOSS_NAMES)
    assert error.startswith(f"{key}={value!r} ")


def test_use_rpn_rois_false_is_refused_for_training_only():
    c = _values(USE_RPN_ROIS=False)
    (error,) = cc.check_values(c, "training", LOSS_NAMES)
    assert error.startswith("USE_RPN_ROIS=False is not supported") and "USE_RPN_ROIS = True" in error
    assert cc.check_values(c, "inference", LOSS_NAMES) == []   # inference never reads it


@pytest.mark.parametrize("schedule,ok", [
    ([{"layers": "heads", "epochs": 2}, {"layers": "all", "epochs": 4, "learning_rate": 1e-4}], True),
    ((), False), ([], False), ("heads", False), ([{"layers": "heads"}], False),
    ([{"layers": "heads", "epochs": 2, "lr": 0.1}], False),          # unknown key
    ([{"layers": "heads", "epochs": 2, "learning_rate": 0}], False),
    ([{"layers": "heads", "epochs": 0}], False), ([{"layers": 3, "epochs": 2}], False),
    ([{"layers": "heads", "epochs": 2.0}], False),
    ([{"layers": "heads", "epochs": 2}, {"layers": "all", "epochs": 2}], False),   # not increasing
])
def test_schedule_rule(schedule, ok):
    errors = cc.check_values(_values(TRAIN_SCHEDULE=schedule), "training", LOSS_NAMES)
    assert errors == [] if ok else [e.split("=")[0] for e in errors] == ["TRAIN_SCHEDULE"]


def test_predicates():
    assert cc.is_int(3) and cc.is_int(np.int64(3)) and not cc.is_int(True) and not cc.is_int(3.0)
    assert cc.is_num(0.5) and cc.is_num(np.float32(2)) and cc.is_num(7)
    assert not any(cc.is_num(v) for v in (math.nan, math.inf, np.bool_(True), False, "1"))
    assert cc.is_seq([1, 2]) and cc.is_seq((1, 2), 2) and cc.is_seq(np.zeros(3), 3)
    assert not cc.is_seq([1, 2], 3) and not cc.is_seq(np.zeros((2, 2))) and not cc.is_seq("ab")


def test_resolve_callable():
    assert cc.resolve_callable("BACKBONE", "os.path:join") is os.path.join
    assert cc.resolve_callable("BACKBONE", "mrcnn.io.config_checks:ConfigError.mro") == ConfigError.mro
    for value in ("resnet50", None, 3, os.path.join):          # not "module:function": unchanged
        assert cc.resolve_callable("BACKBONE", value) is value
    with pytest.raises(ConfigError, match=r"BACKBONE='no_such_module_x:f' cannot be imported"):
        cc.resolve_callable("BACKBONE", "no_such_module_x:f")
    with pytest.raises(ConfigError, match="cannot be imported.*has no attribute"):
        cc.resolve_callable("BACKBONE", "os.path:no_such_function")
    with pytest.raises(ConfigError, match=r"COMPUTE_BACKBONE_SHAPE='math:pi' is not callable"):
        cc.resolve_callable("COMPUTE_BACKBONE_SHAPE", "math:pi")


def _module_level(x):
    return x


def test_callable_name_round_trip():
    name = cc.callable_name("BACKBONE", _module_level)
    assert name == f"{__name__}:_module_level"
    assert cc.resolve_callable("BACKBONE", name) is _module_level
    assert cc.callable_name("BACKBONE", os.path.join) in ("posixpath:join", "ntpath:join")

    def local(x):
        return x

    for fn in (local, lambda x: x):
        with pytest.raises(ConfigError, match="BACKBONE=.*module-level function"):
            cc.callable_name("BACKBONE", fn)
    assert cc.callable_name("BACKBONE", local, strict=False).endswith(
        "test_callable_name_round_trip.<locals>.local")
    wrapped = _module_level.__get__(1)       # a bound method: its name resolves to something else
    with pytest.raises(ConfigError, match="does not resolve back"):
        cc.callable_name("BACKBONE", wrapped)


def test_plain():
    value = {"a": np.array([[1, 2]], np.int64), 3: (np.float32(0.5), True, None, "s"),
             "f": _module_level}
    out = cc.plain("KEY", value)
    assert out == {"a": [[1, 2]], "3": [0.5, True, None, "s"], "f": f"{__name__}:_module_level"}
    assert type(out["a"][0][0]) is int and type(out["3"][0]) is float and out["3"][1] is True
    assert type(cc.plain("K", np.int32(4))) is int
    # a NumPy boolean passes check_values (USE_MINI_MASK, AUGMENT...), so it must be writable too
    assert cc.plain("K", np.bool_(True)) is True and cc.plain("K", [np.bool_(False)]) == [False]
    assert cc.check_values(_values(USE_MINI_MASK=np.bool_(False)), "inference", LOSS_NAMES) == []
    with pytest.raises(ConfigError, match="KEY=.*cannot be written to TOML"):
        cc.plain("KEY", object())
    with pytest.raises(ConfigError, match="KEY=.*module-level"):
        cc.plain("KEY", [lambda: 0])
