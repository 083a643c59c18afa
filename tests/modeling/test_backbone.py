"""Backbone: matterport's ResNet layer names/shapes, feature strides, frozen BatchNorm, custom backbones."""
import keras
import numpy as np
import pytest

from mrcnn.modeling.backbone import BN_EPSILON, BatchNorm, resnet_graph
from mrcnn.model import MaskRCNN
from tests.helpers import check_layer_config_roundtrip, custom_backbone, resnet_layout, tiny_config


def weight_layers(model):
    return {layer.name: layer for layer in model.layers if layer.weights}


@pytest.fixture(scope="module", params=["resnet50", "resnet101"])
def resnet(request):
    image = keras.Input(shape=(None, None, 3))
    outputs = resnet_graph(image, request.param, stage5=True, train_bn=False)
    return request.param, keras.Model(image, outputs[1:])


def test_resnet_names_and_shapes_match_the_coco_file(resnet):
    architecture, model = resnet
    expected = resnet_layout(architecture)
    layers = weight_layers(model)
    assert sorted(layers) == sorted(name for name, _ in expected)
    for name, weights in expected:
        got = [tuple(w.shape) for w in layers[name].weights]
        assert got == [shape for _, shape in weights], name
        kinds = [w.path.split("/")[-1] for w in layers[name].weights]
        assert kinds == [kind for kind, _ in weights], name  # BN order gamma, beta, mean, variance


def test_resnet_block_letters_strides_and_epsilon(resnet):
    architecture, model = resnet
    layers = weight_layers(model)
    last = {"resnet50": "f", "resnet101": "w"}[architecture]
    assert f"res4{last}_branch2c" in layers
    assert f"res4{chr(ord(last) + 1)}_branch2a" not in layers
    assert "res5c_branch2c" in layers and "res5d_branch2a" not in layers
    branch1 = sorted(n for n in layers if n.endswith("_branch1"))
    assert branch1 == ["bn2a_branch1", "bn3a_branch1", "bn4a_branch1", "bn5a_branch1",
                       "res2a_branch1", "res3a_branch1", "res4a_branch1", "res5a_branch1"]
    assert layers["conv1"].strides == (2, 2)
    for stage in (2, 3, 4, 5):
        stride = (1, 1) if stage == 2 else (2, 2)
        assert layers[f"res{stage}a_branch2a"].strides == stride
        assert layers[f"res{stage}a_branch1"].strides == stride
        assert layers[f"res{stage}a_branch2b"].strides == (1, 1)
        assert layers[f"res{stage}b_branch2a"].strides == (1, 1)
    convs = [l for l in layers.values() if isinstance(l, keras.layers.Conv2D)]
    assert convs and all(l.use_bias for l in convs)
    bns = [l for l in layers.values() if isinstance(l, keras.layers.BatchNormalization)]
    assert bns and all(isinstance(l, BatchNorm) and l.epsilon == BN_EPSILON == 1e-3 for l in bns)


@pytest.mark.parametrize("side", [64, 128])
def test_small_backbone_strides(side):
    image = keras.Input(shape=(side, side, 3))
    outputs = resnet_graph(image, "small")
    assert [tuple(t.shape[1:3]) for t in outputs] == [(side // s, side // s) for s in (4, 4, 8, 16, 32)]
    # C1 is the stride-4 map after the max-pool; C2..C5 strides 4, 8, 16, 32
    model = keras.Model(image, outputs)
    got = model(np.zeros((1, side, side, 3), np.float32))
    assert [tuple(g.shape[1:3]) for g in got[1:]] == [(side // s, side // s) for s in (4, 8, 16, 32)]


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(ValueError, match="resnet50"):
        resnet_graph(keras.Input(shape=(64, 64, 3)), "resnet18")


def _small_model(train_bn):
    keras.utils.set_random_seed(0)
    image = keras.Input(shape=(64, 64, 3))
    return keras.Model(image, resnet_graph(image, "small", train_bn=train_bn)[-1])


def _moving_stats(model):
    return [w.numpy().copy() for l in model.layers if isinstance(l, BatchNorm)
            for w in (l.moving_mean, l.moving_variance)]


def test_frozen_bn_ignores_training_flag():
    model = _small_model(train_bn=False)
    x = np.random.default_rng(0).normal(0, 50, (2, 64, 64, 3)).astype(np.float32)
    before = _moving_stats(model)
    inference = model(x, training=False).numpy()
    trained = model(x, training=True).numpy()
    np.testing.assert_array_equal(trained, inference)
    for a, b in zip(before, _moving_stats(model)):
        np.testing.assert_array_equal(a, b)


def test_normal_mode_bn_follows_the_training_flag():
    """TRAIN_BN=None (matterport: "None: train BN layers, the normal mode"): batch statistics and
    moving-average updates when training=True, moving averages at inference."""
    model = _small_model(train_bn=None)
    x = np.random.default_rng(0).normal(0, 50, (2, 64, 64, 3)).astype(np.float32)
    before = _moving_stats(model)
    inference = model(x, training=False).numpy()
    np.testing.assert_array_equal(model(x, training=False).numpy(), inference)  # no update at inference
    trained = model(x, training=True).numpy()
    assert not np.allclose(trained, inference)
    after = _moving_stats(model)
    assert any(not np.allclose(a, b) for a, b in zip(before, after))


def test_trainable_bn_uses_batch_statistics_at_inference_too():
    """TRAIN_BN=True: matterport calls BN with training=True in both modes, so inference uses the
    batch's moments (equal to the training-mode output) and leaves the moving averages alone."""
    model = _small_model(train_bn=True)
    x = np.random.default_rng(0).normal(0, 50, (2, 64, 64, 3)).astype(np.float32)
    before = _moving_stats(model)
    inference = model(x, training=False).numpy()
    for a, b in zip(before, _moving_stats(model)):
        np.testing.assert_array_equal(a, b)
    trained = model(x, training=True).numpy()
    np.testing.assert_allclose(inference, trained, rtol=1e-4, atol=1e-4 * np.abs(trained).max())
    assert any(not np.allclose(a, b) for a, b in zip(before, _moving_stats(model)))


def test_batch_statistics_equal_numpy():
    layer = BatchNorm(train_bn=True, epsilon=1e-3)
    x = np.random.default_rng(1).normal(3, 2, (4, 5, 5, 6)).astype(np.float32)
    layer.build(x.shape)
    gamma = np.linspace(0.5, 1.5, 6).astype(np.float32)
    beta = np.linspace(-1, 1, 6).astype(np.float32)
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
    x64 = x.astype(np.float64)
    mean, var = x64.mean(axis=(0, 1, 2)), x64.var(axis=(0, 1, 2))
    expected = (x64 - mean) / np.sqrt(var + 1e-3) * gamma + beta
    np.testing.assert_allclose(layer(x, training=False).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_batchnorm_config_roundtrip():
    layer = BatchNorm(train_bn=True, name="bn_x")
    clone = check_layer_config_roundtrip(layer)
    assert clone.train_bn is True and clone.epsilon == 1e-3


@pytest.mark.parametrize("backbone", [custom_backbone, "tests.helpers:custom_backbone"])
def test_backbone_callable_and_module_string(backbone, tmp_path):
    config = tiny_config(BACKBONE=backbone)
    assert config.BACKBONE is custom_backbone
    model = MaskRCNN(mode="inference", config=config, model_dir=str(tmp_path))
    net = model.keras_model
    assert net.get_layer("custom_conv5") is not None
    assert "conv1" not in net.weight_groups() and "fpn_c5p5" in net.weight_groups()
    pyramid, logits, _, _ = net.features(np.zeros((1, 128, 128, 3), np.float32))
    # P2..P6 at strides 4..64, then the RPN outputs over every anchor.
    assert [tuple(p.shape[1:3]) for p in pyramid] == [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]
    assert logits.shape[1] == len(model.get_anchors((128, 128))) == 3 * (32 * 32 + 16 * 16 + 8 * 8 + 4 * 4 + 2 * 2)
