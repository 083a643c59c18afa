"""MaskRCNNNet's explicit arguments: from_config(Config, mode) is the one boundary reading the
config; get_config() gives the arguments back and cls(**get_config()) rebuilds the same network."""
import json

import keras
import numpy as np
import pytest

from mrcnn.modeling.compat_graph import MatterportNet
from mrcnn.modeling.network import MaskRCNNNet, network_args
from mrcnn.structures.anchors import get_anchors
from tests.helpers import custom_backbone, tiny_config, tiny_model


def weight_layout(net):
    """[(layer, [(weight path, shape), ...])] of every weight-carrying layer, in order."""
    return [(layer.name, [(w.path, tuple(w.shape)) for w in layer.weights])
            for layer in net.leaf_layers() if layer.weights]


def inputs_for(config, side=128, seed=0):
    image = np.random.default_rng(seed).normal(0, 40, (1, side, side, 3)).astype(np.float32)
    window = np.array([[0.0, 0.0, 1.0, 1.0]], np.float32)
    return image, window, get_anchors(config, (side, side))


def test_rebuild_from_get_config_is_the_same_network(tmp_path):
    model = tiny_model(model_dir=tmp_path)
    net = model.keras_model
    config = net.get_config()
    json.dumps(config)   # plain values only
    clone = type(net).from_config(config)
    assert type(clone) is MatterportNet
    assert clone.get_config() == config
    assert weight_layout(clone) == weight_layout(net)
    assert [w.shape for w in clone.weights] == [w.shape for w in net.weights]
    clone.set_weights(net.get_weights())
    inputs = inputs_for(model.config)
    detections, masks, counts = net(inputs)
    assert int(counts[0]) > 0
    got = clone(inputs)
    for a, b in zip((detections, masks, counts), got):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)


def test_keras_convention_cls_of_get_config():
    net = MaskRCNNNet.from_config(tiny_config())
    clone = MaskRCNNNet(**net.get_config())
    assert clone.get_config() == net.get_config() and clone.name == "mask_rcnn"
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(net))
    assert type(revived) is MaskRCNNNet and revived.get_config() == net.get_config()


def test_from_config_reads_the_config():
    config = tiny_config(NUM_CLASSES=3, XLA_COMPILE=True, IMAGE_RESIZE_MODE="pad64",
                         POST_NMS_ROIS_TRAINING=48, POST_NMS_ROIS_INFERENCE=24)
    args = network_args(config, "training")
    assert args["num_classes"] == 3 and args["image_shape"] == (None, None, 3)
    assert args["anchors_per_location"] == len(config.RPN_ANCHOR_RATIOS)
    net = MaskRCNNNet.from_config(config, "training")
    assert net.mode == "training" and net.num_classes == 3 and net.mask_shape == (28, 28)
    assert net.proposals.proposal_count == 48
    assert net.roi_align_box.use_gather and net.roi_align_mask.use_gather
    assert MaskRCNNNet.from_config(config).proposals.proposal_count == 24
    square = MaskRCNNNet.from_config(tiny_config()).get_config()
    assert square["image_shape"] == (128, 128, 3)
    # a dict's mode can be overridden, as from a Config
    assert MaskRCNNNet.from_config(square, mode="training").mode == "training"


def test_callable_backbone_is_stored_by_name():
    net = MaskRCNNNet.from_config(tiny_config(BACKBONE=custom_backbone))
    config = net.get_config()
    assert config["backbone"] == "tests.helpers:custom_backbone"
    clone = MaskRCNNNet.from_config(config)
    assert clone.feature_model.get_layer("custom_conv5") is not None
    assert weight_layout(clone) == weight_layout(net)


def test_a_config_is_not_an_explicit_argument():
    with pytest.raises(TypeError, match="from_config"):
        MaskRCNNNet(tiny_config())
    with pytest.raises(ValueError, match="mode"):
        MaskRCNNNet(4, mode="train")


def test_view_layers_carry_the_network_config():
    """matterport's graph view (``inference_view``): its weightless layers run part of the net;
    their config holds the net's explicit arguments, so they revive over a rebuilt net."""
    from tests.helpers import check_layer_config_roundtrip

    net = MatterportNet.from_config(tiny_config())
    view = net.inference_view()
    for name in ("mrcnn_classifier", "mrcnn_windows", "mrcnn_mask"):
        layer = view.get_layer(name)
        assert layer.get_config()["net"] == net.get_config()
    clone = check_layer_config_roundtrip(view.get_layer("mrcnn_mask"))
    assert clone.dtype_policy.name == "float32" and clone.kernel.shape == (1, 1, 16, 4)
    json.dumps(view.get_config())


def test_anchors_from_explicit_arguments():
    from mrcnn.structures.anchors import anchors_for, feature_shapes

    config = tiny_config()
    explicit = anchors_for((128, 96), config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS,
                           config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE)
    assert explicit is get_anchors(config, (128, 96))   # one cache
    assert feature_shapes((128, 96), [4, 64]).tolist() == [[32, 24], [2, 2]]
