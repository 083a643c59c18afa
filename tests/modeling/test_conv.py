"""FastGradConv2D: forward and all three gradients equal keras Conv2D's (TF's own conv gradients)."""
import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers as KL

from mrcnn.modeling.conv import FastGradConv2D, fast_grad_conv2d

EPS32 = np.finfo(np.float32).eps


def assert_sums_close(got, want, length, scale, what="", c=64.0):
    """Element-wise |got - want| <= c * eps32 * sqrt(length) * scale, for outputs that are sums
    of ``length`` products each bounded by ``scale`` (max|a| * max|b| of the operands).

    Rounding of a length-K sum grows like sqrt(K) ulps of its terms whatever the summation
    order (Eigen, oneDNN's blocked kernels): measured up to 3x (oneDNN off) and 12x (on) that
    unit, so c = 64 leaves margin on any backend, while a wrong kernel orientation moves
    elements by O(scale), 10^3-10^5 times more (checked by unflipping conv.py's kernel).
    """
    atol = c * EPS32 * np.sqrt(length) * scale
    err = np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))
    assert err.max(initial=0) <= atol, f"{what}: max error {err.max():.3g} > {atol:.3g} " \
        f"(K={length}, scale={scale:.3g}) at {np.unravel_index(err.argmax(), err.shape)}"


def _grads(layer, x):
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        # A non-uniform upstream gradient, so a transposed or unflipped kernel would show.
        loss = tf.reduce_sum(y * tf.reshape(tf.sin(tf.range(tf.size(y), dtype=y.dtype)), y.shape))
    dx, dk, db = tape.gradient(loss, [x, layer.kernel, layer.bias])
    return y.numpy(), dx.numpy(), dk.numpy(), db.numpy()


# (spatial, cin, cout, kernel, stride, padding); 64x65 takes the per-tap matmul filter gradient,
# 9x10 and 14x15 TF's filter gradient; strided convolutions fall back to Conv2D.
CASES = [
    (64, 5, 7, 3, 1, "same"), (9, 5, 7, 3, 1, "same"), (14, 4, 6, 3, 1, "valid"),
    (64, 3, 4, 3, 1, "valid"), (64, 6, 5, 1, 1, "valid"), (9, 6, 5, 1, 1, "same"),
    (64, 3, 4, 5, 1, "same"),
    (9, 6, 5, 1, 2, "valid"), (10, 6, 5, 1, 2, "same"), (40, 3, 4, 7, 2, "valid"),  # fall back
]


def test_strided_and_even_kernels_fall_back():
    x, k = tf.zeros((1, 8, 8, 2)), tf.zeros((3, 3, 2, 4))
    assert fast_grad_conv2d(x, k, (2, 2), "same") is None
    assert fast_grad_conv2d(x, tf.zeros((2, 2, 2, 4)), (1, 1), "same") is None
    assert fast_grad_conv2d(x, k, (1, 1), "same") is not None


@pytest.mark.parametrize("spatial,cin,cout,k,stride,padding", CASES)
def test_matches_conv2d_and_its_gradients(spatial, cin, cout, k, stride, padding):
    rng = np.random.default_rng(k * 100 + spatial)
    x = rng.normal(0, 1, (2, spatial, spatial + 1, cin)).astype(np.float32)
    kw = dict(filters=cout, kernel_size=k, strides=stride, padding=padding)
    ours, ref = FastGradConv2D(**kw), KL.Conv2D(**kw)
    ours.build(x.shape), ref.build(x.shape)
    kernel = rng.normal(0, 0.3, ours.kernel.shape).astype(np.float32)
    bias = rng.normal(0, 0.3, (cout,)).astype(np.float32)
    ours.set_weights([kernel, bias]), ref.set_weights([kernel, bias])
    got, want = _grads(ours, x), _grads(ref, x)
    pixels = want[0].size // cout   # N * Ho * Wo: the reduction length of dkernel and dbias
    xmax, kmax = np.abs(x).max(), np.abs(kernel).max()
    gmax = 1.0   # the upstream gradient sin(i) of ``_grads``
    # (reduction length, bound on each product) of y, dx, dkernel and dbias.
    sums = [(k * k * cin, xmax * kmax + np.abs(bias).max()), (k * k * cout, gmax * kmax),
            (pixels, xmax * gmax), (pixels, gmax)]
    for a, b, (length, scale), what in zip(got, want, sums, ("y", "dx", "dkernel", "dbias")):
        assert a.shape == b.shape, what
        assert_sums_close(a, b, length, scale, what)


def test_filter_gradient_against_numpy():
    """dk[i, j, c, o] = sum over n, y, x of xpad[n, y+i, x+j, c] * dy[n, y, x, o] (hand reference)."""
    rng = np.random.default_rng(3)
    # 65x64 output pixels: the per-tap matmul path (at least 64*64).
    x = rng.normal(0, 1, (1, 65, 64, 2)).astype(np.float32)
    k = rng.normal(0, 1, (3, 3, 2, 3)).astype(np.float32)
    dy = rng.normal(0, 1, (1, 65, 64, 3)).astype(np.float32)
    xt, kt = tf.constant(x), tf.constant(k)
    with tf.GradientTape() as tape:
        tape.watch([xt, kt])
        y = fast_grad_conv2d(xt, kt, (1, 1), "same")
    dx, dk = tape.gradient(y, [xt, kt], output_gradients=tf.constant(dy))
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    want = np.zeros(k.shape)   # float64 reference
    for i in range(3):
        for j in range(3):
            want[i, j] = np.einsum("nyxc,nyxo->co", xp[:, i:i + 65, j:j + 64].astype(np.float64), dy)
    assert_sums_close(dk.numpy(), want, 65 * 64, np.abs(x).max() * np.abs(dy).max(), "dkernel")
    # dx[n, y, x, c] = sum over taps of dy[n, y-i+1, x-j+1, o] * k[i, j, c, o]
    dyp = np.pad(dy, ((0, 0), (1, 1), (1, 1), (0, 0)))
    want_dx = np.zeros(x.shape)
    for i in range(3):
        for j in range(3):
            want_dx += np.einsum("nyxo,co->nyxc", dyp[:, 2 - i:2 - i + 65, 2 - j:2 - j + 64].astype(np.float64),
                                 k[i, j])
    assert_sums_close(dx.numpy(), want_dx, 3 * 3 * 3, np.abs(dy).max() * np.abs(k).max(), "dx")


def test_dynamic_spatial_shape_in_a_function():
    """The RPN runs one sub-model on every pyramid level, so H and W can be unknown when traced."""
    layer = FastGradConv2D(4, 3, padding="same")
    layer.build((None, None, None, 3))

    @tf.function(input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)])
    def grads(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.square(layer(x)))
        return tape.gradient(loss, [x, layer.kernel])

    ref = KL.Conv2D(4, 3, padding="same")
    ref.build((None, None, None, 3))
    ref.set_weights(layer.get_weights())
    for hw in ((40, 36), (9, 11)):
        x = tf.random.stateless_normal((1, *hw, 3), (1, 2))
        got = grads(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.square(ref(x)))
        want = tape.gradient(loss, [x, ref.kernel])
        y = ref(x).numpy()
        # loss = sum(y^2): dx sums 9*4 products of (2y) and the kernel; dk sums H*W of x and 2y.
        gmax = 2 * np.abs(y).max()
        kmax, xmax = np.abs(ref.kernel.numpy()).max(), np.abs(x.numpy()).max()
        assert_sums_close(got[0], want[0], 9 * 4, gmax * kmax, "dx")
        assert_sums_close(got[1], want[1], hw[0] * hw[1], xmax * gmax, "dkernel")


def test_serializes_and_keeps_weight_names():
    layer = FastGradConv2D(8, 3, padding="same", name="fpn_p2")
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(restored) is FastGradConv2D and restored.get_config() == layer.get_config()
    layer.build((None, 16, 16, 4))
    assert [w.path for w in layer.weights] == ["fpn_p2/kernel", "fpn_p2/bias"]
