"""Box and mask heads: matterport names and shapes at NUM_CLASSES=81; per-ROI output shapes."""
import keras
import numpy as np
import pytest

from mrcnn.modeling.backbone import BatchNorm
from mrcnn.modeling.heads import WholeInputConv2D, build_box_head, build_mask_head
from mrcnn.modeling.network import at_least_one_row
from tests.helpers import heads_layout


@pytest.fixture(scope="module")
def coco_heads():
    return build_box_head(7, 256, 81, 1024), build_mask_head(14, 256, 81, 256)


def test_names_and_shapes_for_81_classes(coco_heads):
    box_head, mask_head = coco_heads
    layers = {l.name: l for m in coco_heads for l in m.layers if l.weights}
    expected = heads_layout(81)
    assert sorted(layers) == sorted(name for name, _ in expected)
    for name, weights in expected:
        assert [tuple(w.shape) for w in layers[name].weights] == [s for _, s in weights], name
    # Spot checks straight from the compat doc.
    assert tuple(layers["mrcnn_class_conv1"].kernel.shape) == (7, 7, 256, 1024)
    assert tuple(layers["mrcnn_class_logits"].kernel.shape) == (1024, 81)
    assert tuple(layers["mrcnn_bbox_fc"].kernel.shape) == (1024, 324)
    assert tuple(layers["mrcnn_mask_deconv"].kernel.shape) == (2, 2, 256, 256)
    assert layers["mrcnn_mask_deconv"].strides == (2, 2)
    assert tuple(layers["mrcnn_mask"].kernel.shape) == (1, 1, 256, 81)
    assert all(isinstance(layers[f"mrcnn_mask_bn{i}"], BatchNorm) for i in range(1, 5))
    assert all(l.epsilon == 1e-3 for l in layers.values() if isinstance(l, BatchNorm))


def test_output_shapes_and_ranges():
    box_head = build_box_head(7, 16, 5, 32)
    mask_head = build_mask_head(14, 16, 5, 8)
    pooled = np.random.default_rng(0).normal(0, 1, (3, 7, 7, 16)).astype(np.float32)
    logits, probs, deltas = box_head(pooled)
    assert logits.shape == (3, 5) and probs.shape == (3, 5) and deltas.shape == (3, 5, 4)
    np.testing.assert_allclose(probs.numpy().sum(-1), 1, rtol=1e-5)
    # deltas [N, C, 4] is mrcnn_bbox_fc's output reshaped class-major.
    fc = box_head.get_layer("mrcnn_bbox_fc")
    shared = box_head.get_layer("pool_squeeze").output
    flat = keras.Model(box_head.input, [fc.output, shared])(pooled)[0].numpy()
    np.testing.assert_allclose(deltas.numpy(), flat.reshape(3, 5, 4), rtol=1e-6)
    masks = mask_head(np.zeros((2, 14, 14, 16), np.float32)).numpy()
    assert masks.shape == (2, 28, 28, 5) and masks.min() >= 0 and masks.max() <= 1
    # Any number of ROIs, including none: the network pads an empty set to one row, since
    # oneDNN's BatchNorm rejects an empty batch (mrcnn.modeling.network.at_least_one_row).
    assert at_least_one_row(mask_head, np.zeros((0, 14, 14, 16), np.float32)).shape == (0, 28, 28, 5)
    assert at_least_one_row(lambda x: box_head(x)[2], np.zeros((0, 7, 7, 16), np.float32)).shape == (0, 5, 4)
    x = np.random.default_rng(1).normal(0, 1, (2, 14, 14, 16)).astype(np.float32)
    np.testing.assert_array_equal(at_least_one_row(mask_head, x).numpy(), mask_head(x).numpy())


def _numpy_valid_conv(x, kernel, bias):
    """Reference 'valid' stride-1 cross-correlation, x [N, H, W, C], kernel [kh, kw, C, O]."""
    kh, kw = kernel.shape[:2]
    oh, ow = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = np.zeros((x.shape[0], oh, ow, kernel.shape[3]))
    for i in range(oh):
        for j in range(ow):
            out[:, i, j] = np.einsum("nhwc,hwco->no", x[:, i:i + kh, j:j + kw], kernel)
    return out + bias


@pytest.mark.parametrize("spatial", [7, 9])
def test_whole_input_conv_matches_convolution_and_its_gradients(spatial):
    """The matmul form (kernel == input size) and the fallback (larger input) both equal a
    NumPy convolution, and the kernel/input gradients equal Conv2D's."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, spatial, spatial, 6)).astype("float32")
    layer = WholeInputConv2D(4, 7, padding="valid")
    ref = keras.layers.Conv2D(4, 7, padding="valid")
    layer.build(x.shape)
    ref.build(x.shape)
    kernel = rng.normal(size=(7, 7, 6, 4)).astype("float32")
    bias = rng.normal(size=4).astype("float32")
    layer.set_weights([kernel, bias])
    ref.set_weights([kernel, bias])
    np.testing.assert_allclose(np.asarray(layer(x)), _numpy_valid_conv(x, kernel, bias), rtol=1e-4, atol=1e-4)

    xt = tf.constant(x)
    grads = []
    for lyr in (layer, ref):
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = tf.reduce_sum(tf.square(lyr(xt)))
        grads.append([np.asarray(g) for g in tape.gradient(y, [xt, lyr.kernel, lyr.bias])])
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


def test_whole_input_conv_serializes():
    layer = WholeInputConv2D(3, 7, padding="valid", name="mrcnn_class_conv1")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(clone) is WholeInputConv2D
    assert clone.get_config() == layer.get_config()
