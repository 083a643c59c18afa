"""Weight files: matterport's Keras-2 HDF5 layout written by hand with h5py, our own checkpoints,
clear errors, and the epoch/log_dir taken from a checkpoint path.

The ResNet-101 COCO fixture has the real layer names and shapes (64 M values) but stays a few
KB on disk: most datasets are never written, so HDF5 allocates nothing and reads return the
dataset's fill value, a different constant per (layer, weight index). Small weights and a few
big kernels hold random values, which also checks element order.
"""
import os
import shutil

import h5py
import numpy as np
import pytest

from mrcnn.io import weights_io
from mrcnn.config import Config
from mrcnn.model import MaskRCNN
from mrcnn.io.weights_io import HEAD_LAYERS, WeightsError
from tests.helpers import coco_layout, random_image, tiny_config, tiny_model

RANDOM_KERNELS = {"conv1", "rpn_model", "mrcnn_class_logits", "mrcnn_mask", "res5c_branch2c"}
# Weightless layers that matterport's file lists too (empty weight_names).
WEIGHTLESS = ["input_image", "zero_padding2d_1", "res2a_out", "ROI", "mrcnn_detection"]


def fixture_values(layout, seed=0):
    """{(group, weight_name): value} where value is an array (random) or a float constant."""
    rng = np.random.default_rng(seed)
    values = {}
    for gi, (group, weights) in enumerate(layout):
        for wi, (wname, shape) in enumerate(weights):
            if int(np.prod(shape)) <= 4096 or group in RANDOM_KERNELS:
                values[group, wname] = rng.normal(0, 1, shape).astype(np.float32)
            else:
                values[group, wname] = float(gi + 1 + wi / 8)  # exact in float32
    return values


def write_keras2_h5(path, layout, values, split_layer_names, str_attrs):
    """matterport/Keras-2 layout: root attr layer_names (optionally split into layer_names0, 1),
    one group per layer with attr weight_names, datasets at '{layer}/{weight_name}'."""
    names = [g for g, _ in layout]
    names = WEIGHTLESS[:2] + names[:100] + WEIGHTLESS[2:] + names[100:]
    encode = (lambda xs: np.array(xs, dtype=h5py.string_dtype())) if str_attrs else \
        (lambda xs: np.array([x.encode() for x in xs], dtype="S"))
    shapes = dict(layout)
    with h5py.File(path, "w") as f:
        if split_layer_names:
            half = len(names) // 2
            f.attrs["layer_names0"] = encode(names[:half])
            f.attrs["layer_names1"] = encode(names[half:])
        else:
            f.attrs["layer_names"] = encode(names)
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for name in names:
            g = f.create_group(name)
            weights = shapes.get(name, [])
            g.attrs["weight_names"] = encode([w for w, _ in weights]) if weights else []
            for wname, shape in weights:
                v = values[name, wname]
                if isinstance(v, float):
                    g.create_dataset(wname, shape=shape, dtype="float32", fillvalue=v)
                else:
                    g.create_dataset(wname, data=v)


def model_weights(model, group):
    """[(file weight name, variable)] of a group, named as in the file."""
    layer = model.keras_model.weight_groups()[group]
    if group == "rpn_model":
        return [(w.path.split("/", 1)[1] if w.path.startswith("rpn_model/") else w.path, w)
                for w in layer.weights]
    return [(f"{group}/{w.path.split('/')[-1]}", w) for w in layer.weights]


def assert_group_equals(model, group, values):
    for wname, var in model_weights(model, group):
        want = values[group, wname + ":0"]
        got = var.numpy()
        if isinstance(want, float):
            assert np.all(got == np.float32(want)), f"{group} {wname}"
        else:
            np.testing.assert_array_equal(got, want, err_msg=f"{group} {wname}")


class CocoConfig(Config):
    NAME = "coco"
    IMAGES_PER_GPU = 1
    NUM_CLASSES = 81
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128


class TwoClassConfig(CocoConfig):
    NAME = "balloon"
    NUM_CLASSES = 2


@pytest.fixture(scope="module")
def coco_files(tmp_path_factory):
    layout = coco_layout(81, "resnet101")
    values = fixture_values(layout)
    d = tmp_path_factory.mktemp("coco")
    paths = {}
    for split, as_str in ((True, False), (False, True)):
        path = d / f"mask_rcnn_coco_{'split_bytes' if split else 'plain_str'}.h5"
        write_keras2_h5(path, layout, values, split, as_str)
        paths[split, as_str] = str(path)
    return layout, values, paths


@pytest.fixture(scope="module")
def coco_model(tmp_path_factory):
    return MaskRCNN(mode="inference", config=CocoConfig(), model_dir=str(tmp_path_factory.mktemp("logs")))


def test_fixture_is_small_and_shaped_like_the_coco_file(coco_files):
    layout, _, paths = coco_files
    assert sum(int(np.prod(s)) for _, ws in layout for _, s in ws) > 60_000_000  # ResNet-101, 81 classes
    for path in paths.values():
        assert os.path.getsize(path) < 20_000_000
    with h5py.File(paths[True, False], "r") as f:
        assert "layer_names" not in f.attrs and len(f.attrs["layer_names1"]) > 0
        assert list(f["rpn_model"].attrs["weight_names"])[0] == b"rpn_conv_shared/kernel:0"
        assert f["rpn_model/rpn_conv_shared/kernel:0"].shape == (3, 3, 256, 512)
        assert f["conv1/conv1/kernel:0"].shape == (7, 7, 3, 64)


@pytest.mark.parametrize("variant", [(True, False), (False, True)], ids=["split-bytes", "plain-str"])
def test_coco_file_loads_by_name_into_every_weight(coco_files, coco_model, variant):
    layout, values, paths = coco_files
    groups = coco_model.keras_model.weight_groups()
    assert sorted(groups) == sorted(g for g, _ in layout)  # the model has exactly the file's layers
    loaded = coco_model.load_weights(paths[variant], by_name=True)
    assert sorted(loaded) == sorted(groups)
    for group, _ in layout:
        assert_group_equals(coco_model, group, values)
    assert coco_model.epoch == 0  # not a checkpoint name


def test_coco_file_strict_load(coco_files, coco_model):
    layout, values, paths = coco_files
    coco_model.load_weights(paths[False, True], by_name=False)
    assert_group_equals(coco_model, "res4w_branch2c", values)
    assert_group_equals(coco_model, "rpn_model", values)


@pytest.fixture(scope="module")
def two_class_model(tmp_path_factory):
    return MaskRCNN(mode="inference", config=TwoClassConfig(), model_dir=str(tmp_path_factory.mktemp("logs")))


def test_new_class_count_loads_with_exclude(coco_files, two_class_model):
    layout, values, paths = coco_files
    model = two_class_model
    init = {g: [w.numpy().copy() for w in model.keras_model.weight_groups()[g].weights]
            for g in HEAD_LAYERS if g in model.keras_model.weight_groups()}
    assert sorted(init) == ["mrcnn_bbox_fc", "mrcnn_class_logits", "mrcnn_mask"]  # mrcnn_bbox has none
    loaded = model.load_weights(paths[True, False], by_name=True,
                                exclude=["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"])
    assert not set(loaded) & set(HEAD_LAYERS)
    for group, _ in layout:
        if group in HEAD_LAYERS:
            for w, before in zip(model.keras_model.weight_groups()[group].weights, init[group]):
                np.testing.assert_array_equal(w.numpy(), before)
        else:
            assert_group_equals(model, group, values)


@pytest.mark.parametrize("by_name", [True, False])
def test_new_class_count_without_exclude_is_a_helpful_error(coco_files, two_class_model, by_name):
    _, _, paths = coco_files
    model = two_class_model
    before = model.keras_model.get_layer("conv1").kernel.numpy().copy()
    with pytest.raises(WeightsError) as info:
        model.load_weights(paths[True, False], by_name=by_name)
    msg = str(info.value)
    assert "mrcnn_class_logits" in msg and "(1024, 81)" in msg and "(1024, 2)" in msg
    assert "exclude=['mrcnn_class_logits', 'mrcnn_bbox_fc', 'mrcnn_bbox', 'mrcnn_mask']" in msg
    assert "NUM_CLASSES=2" in msg and "81 classes" in msg
    # Checked before assigning: a failed load leaves the model as it was.
    np.testing.assert_array_equal(model.keras_model.get_layer("conv1").kernel.numpy(), before)


# ---------------------------------------------------------------- our own checkpoints (tiny)
def all_weights(model):
    return [w.numpy() for g in model.keras_model.weight_groups().values() for w in g.weights]


def test_save_load_round_trip_is_exact(tmp_path):
    a = tiny_model(model_dir=tmp_path, seed=0)
    image = random_image(96, 128, seed=3)
    want = a.detect([image])[0]
    assert len(want["rois"]) > 0
    saved = all_weights(a)
    path = tmp_path / "tiny.h5"
    a.save_weights(str(path))
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())  # atomic write left no temp
    # A freshly built model (other random weights) loads it strictly (by_name=False).
    b = tiny_model(model_dir=tmp_path, seed=1)
    assert any(not np.array_equal(x, y) for x, y in zip(saved, all_weights(b)))
    b.load_weights(str(path))
    for x, y in zip(saved, all_weights(b)):
        np.testing.assert_array_equal(x, y)
    # Scramble a, load the file back: weights and detect() outputs are as before.
    rng = np.random.default_rng(0)
    for group in a.keras_model.weight_groups().values():
        for w in group.weights:
            w.assign(rng.normal(0, 1, w.shape).astype(np.float32))
    a.load_weights(str(path))
    for x, y in zip(saved, all_weights(a)):
        np.testing.assert_array_equal(x, y)
    got = a.detect([image])[0]
    for key in ("rois", "class_ids", "scores", "masks"):
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_saved_file_has_the_keras2_layout(tmp_path):
    model = tiny_model(model_dir=tmp_path, foreground=False)
    path = tmp_path / "tiny.h5"
    model.save_weights(str(path))
    with h5py.File(path, "r") as f:
        names = [n.decode() for n in f.attrs["layer_names"]]
        assert names == list(model.keras_model.weight_groups())
        assert [n.decode() for n in f["conv1"].attrs["weight_names"]] == ["conv1/kernel:0", "conv1/bias:0"]
        assert [n.decode() for n in f["bn_conv1"].attrs["weight_names"]] == [
            "bn_conv1/gamma:0", "bn_conv1/beta:0", "bn_conv1/moving_mean:0", "bn_conv1/moving_variance:0"]
        rpn = [n.decode() for n in f["rpn_model"].attrs["weight_names"]]
        assert rpn == ["rpn_conv_shared/kernel:0", "rpn_conv_shared/bias:0", "rpn_class_raw/kernel:0",
                       "rpn_class_raw/bias:0", "rpn_bbox_pred/kernel:0", "rpn_bbox_pred/bias:0"]
        np.testing.assert_array_equal(f["rpn_model/rpn_class_raw/kernel:0"][()],
                                      model.keras_model.get_layer("rpn_class_raw").kernel.numpy())


def _drop_group(src, dst, group):
    shutil.copy(src, dst)
    with h5py.File(dst, "a") as f:
        names = [n for n in weights_io.read_list_attr(f, "layer_names") if n != group]
        del f[group]
        f.attrs["layer_names"] = np.array([n.encode() for n in names], dtype="S")


def test_strict_load_names_the_missing_layer(tmp_path):
    a = tiny_model(model_dir=tmp_path, seed=0)
    path, broken = tmp_path / "full.h5", tmp_path / "broken.h5"
    a.save_weights(str(path))
    _drop_group(path, broken, "mrcnn_mask_conv3")
    b = tiny_model(model_dir=tmp_path, seed=1)
    with pytest.raises(WeightsError, match=r"missing in file: \['mrcnn_mask_conv3'\].*by_name=True"):
        b.load_weights(str(broken))
    loaded = b.load_weights(str(broken), by_name=True)  # by name: the rest loads
    assert "mrcnn_mask_conv3" not in loaded and "mrcnn_mask_conv4" in loaded
    np.testing.assert_array_equal(b.keras_model.get_layer("mrcnn_mask_conv4").kernel.numpy(),
                                  a.keras_model.get_layer("mrcnn_mask_conv4").kernel.numpy())
    assert not np.array_equal(b.keras_model.get_layer("mrcnn_mask_conv3").kernel.numpy(),
                              a.keras_model.get_layer("mrcnn_mask_conv3").kernel.numpy())


def test_bad_files_are_clear_errors(tmp_path):
    model = tiny_model(model_dir=tmp_path, foreground=False)
    missing = tmp_path / "nope.h5"
    with pytest.raises(WeightsError, match="not found.*nope.h5"):
        model.load_weights(str(missing))
    text = tmp_path / "weights.h5"
    text.write_text("<html>404 Not Found</html>")
    with pytest.raises(WeightsError, match="weights.h5 is not an HDF5 weights file"):
        model.load_weights(str(text), by_name=True)
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        f.create_group("something")
    with pytest.raises(WeightsError, match="no 'layer_names'"):
        model.load_weights(str(empty))


def test_checkpoint_path_sets_epoch_and_log_dir(tmp_path):
    model = tiny_model(model_dir=tmp_path, foreground=False)
    run = tmp_path / "tiny20260101T1200"
    run.mkdir()
    ckpt = run / "mask_rcnn_tiny_0003.h5"
    model.save_weights(str(ckpt))
    other = tiny_model(model_dir=tmp_path, foreground=False)
    assert other.epoch == 0
    other.load_weights(str(ckpt))
    assert other.epoch == 3
    assert os.path.normpath(other.log_dir) == os.path.normpath(str(run))
    assert other.checkpoint_path == os.path.join(other.log_dir, "mask_rcnn_tiny_{epoch:04d}.h5")
    assert other.find_last() == str(ckpt)
