"""FPN and the shared RPN sub-model: matterport names/shapes, anchor-aligned output order and count."""
import keras
import numpy as np
import pytest

from mrcnn.structures.anchors import get_anchors
from mrcnn.modeling.network import build_feature_model, network_args
from mrcnn.modeling.rpn import apply_rpn, build_rpn_model
from tests.helpers import RPN_LAYOUT, fpn_layout, tiny_config


def features_of(config):
    """The feature model of ``config``'s network, from the explicit arguments."""
    a = network_args(config)
    return build_feature_model(a["image_shape"], a["backbone"], a["train_bn"], a["pyramid_size"],
                               a["anchor_stride"], a["anchors_per_location"], a["rpn_conv_channels"])


@pytest.fixture(scope="module")
def resnet101_features():
    config = tiny_config(BACKBONE="resnet101", TOP_DOWN_PYRAMID_SIZE=256, RPN_CONV_CHANNELS=512,
                         RPN_ANCHOR_SCALES=(32, 64, 128, 256, 512))
    return features_of(config)


def test_fpn_names_and_shapes(resnet101_features):
    layers = {l.name: l for l in resnet101_features.layers}
    for name, weights in fpn_layout(256):
        assert [tuple(w.shape) for w in layers[name].weights] == [s for _, s in weights], name
    assert isinstance(layers["fpn_p6"], keras.layers.MaxPooling2D)
    assert layers["fpn_p6"].strides == (2, 2) and layers["fpn_p6"].pool_size == (1, 1)


def test_rpn_is_one_nested_model(resnet101_features):
    rpn = resnet101_features.get_layer("rpn_model")
    assert isinstance(rpn, keras.Model)
    assert [l.name for l in resnet101_features.layers].count("rpn_model") == 1  # shared by P2..P6
    inner = {l.name: l for l in rpn.layers if l.weights}
    assert sorted(inner) == sorted(name for name, _ in RPN_LAYOUT)
    for name, weights in RPN_LAYOUT:
        assert [tuple(w.shape) for w in inner[name].weights] == [s for _, s in weights], name
    assert len(rpn.weights) == 6


@pytest.mark.parametrize("mode,shape", [("square", (128, 128)), ("pad64", (192, 128))])
def test_rpn_outputs_one_row_per_anchor(mode, shape):
    config = tiny_config(IMAGE_RESIZE_MODE=mode)
    model = features_of(config)
    outs = model(np.zeros((2,) + shape + (3,), np.float32))
    p2, p3, p4, p5, p6, logits, probs, deltas = outs
    assert [tuple(p.shape[1:3]) for p in (p2, p3, p4, p5, p6)] == \
        [(shape[0] // s, shape[1] // s) for s in (4, 8, 16, 32, 64)]
    # P6 is P5 subsampled with stride 2.
    np.testing.assert_array_equal(p6.numpy(), p5.numpy()[:, ::2, ::2])
    count = len(get_anchors(config, shape))
    assert logits.shape == (2, count, 2) and probs.shape == (2, count, 2) and deltas.shape == (2, count, 4)
    np.testing.assert_allclose(probs.numpy().sum(-1), 1.0, rtol=1e-5)


def test_rpn_output_order_is_the_anchor_order():
    """Feature maps carry (row, col, level) in channels 0-2; with hand-set weights the RPN's
    deltas become (row, col, level, ratio index), which must come out in the anchors' order:
    level, then row-major position, then ratio."""
    depth, ratios = 8, 3
    rpn = build_rpn_model(anchor_stride=1, anchors_per_location=ratios, depth=depth, conv_channels=depth)
    layers = {l.name: l for l in rpn.layers}
    identity = np.zeros((3, 3, depth, depth), np.float32)
    identity[1, 1] = np.eye(depth)
    layers["rpn_conv_shared"].set_weights([identity, np.zeros(depth, np.float32)])
    kernel = np.zeros((1, 1, depth, 4 * ratios), np.float32)
    bias = np.zeros(4 * ratios, np.float32)
    for a in range(ratios):
        kernel[0, 0, 0, 4 * a], kernel[0, 0, 1, 4 * a + 1], kernel[0, 0, 2, 4 * a + 2] = 1, 1, 1
        bias[4 * a + 3] = a
    layers["rpn_bbox_pred"].set_weights([kernel, bias])
    sizes = [(4, 6), (2, 3), (1, 2)]
    maps = []
    for level, (h, w) in enumerate(sizes):
        m = np.zeros((1, h, w, depth), np.float32)
        m[0, :, :, 0] = np.arange(h)[:, None]
        m[0, :, :, 1] = np.arange(w)[None, :]
        m[0, :, :, 2] = level
        maps.append(m)
    _, _, deltas = apply_rpn(rpn, maps)
    expected = [(y, x, level, a) for level, (h, w) in enumerate(sizes)
                for y in range(h) for x in range(w) for a in range(ratios)]
    np.testing.assert_array_equal(deltas.numpy()[0], np.array(expected, np.float32))
