"""The gather-based crop-and-resize against ``tf.image.crop_and_resize`` (forward and feature-map
gradient), its multilevel form against per-level crops, PyramidROIAlign(use_gather=True) against
the default path, and both under ``tf.function(jit_compile=True)`` on CPU."""
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.modeling.roi_align import PyramidROIAlign, roi_levels
from mrcnn.modeling.roi_align_gather import EDGE_TOLERANCE, crop_and_resize, multilevel_crop_and_resize
from tests.helpers import check_layer_config_roundtrip

SIZES = [(7, 7), (14, 14), (1, 1), (1, 4), (3, 5)]


def random_boxes(rng, n):
    """[n, 4] normalised boxes: inside, partly outside the image, zero (padding) and flipped."""
    boxes = rng.uniform(-0.3, 1.3, (n, 4)).astype(np.float32)
    boxes[: n // 4] = np.sort(rng.uniform(0, 1, (n // 4, 2, 2)), axis=1).transpose(0, 2, 1).reshape(-1, 4)
    boxes[n // 4: n // 4 + 3] = 0.0
    boxes[-1] = [0.9, 0.8, 0.1, 0.2]
    return boxes


def setup(seed=0, n=32, shape=(2, 13, 17, 5)):
    rng = np.random.default_rng(seed)
    image = tf.constant(rng.normal(size=shape).astype(np.float32))
    boxes = tf.constant(random_boxes(rng, n))
    box_ix = tf.constant(rng.integers(0, shape[0], n).astype(np.int32))
    return image, boxes, box_ix


def value_and_image_grad(fn, image, boxes, box_ix, size):
    upstream = tf.random.stateless_normal([boxes.shape[0], size[0], size[1], image.shape[-1]], [3, 4])
    with tf.GradientTape() as tape:
        tape.watch(image)
        out = fn(image, boxes, box_ix, size)
        loss = tf.reduce_sum(out * upstream)
    return out.numpy(), tape.gradient(loss, image).numpy()


@pytest.mark.parametrize("size", SIZES)
def test_equals_tf_crop_and_resize_forward_and_gradient(size):
    image, boxes, box_ix = setup()
    want, want_grad = value_and_image_grad(tf.image.crop_and_resize, image, boxes, box_ix, size)
    got, got_grad = value_and_image_grad(crop_and_resize, image, boxes, box_ix, size)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert (want == 0).any()   # boxes reaching outside the image were among them
    # The crop is linear in the image, so its gradient is the adjoint: <crop(x), u> = <x, grad>.
    # Ours holds for every box; TensorFlow's gradient kernel does not for samples that round onto
    # the map's edge (its forward reads the edge pixel, its gradient drops it: -7.94 vs -14.7 here
    # at 14x14), so TensorFlow's gradient is the reference only for boxes inside the image.
    upstream = tf.random.stateless_normal(got.shape, [3, 4]).numpy().astype(np.float64)
    np.testing.assert_allclose((image.numpy() * got_grad).sum(), (got * upstream).sum(), rtol=1e-5)
    b = boxes.numpy()
    inside = (b.min(axis=1) > 1e-3) & (b.max(axis=1) < 1 - 1e-3)
    assert inside.sum() >= 8
    sub = (image, tf.constant(b[inside]), tf.constant(box_ix.numpy()[inside]), size)
    _, want_grad = value_and_image_grad(tf.image.crop_and_resize, *sub)
    _, got_grad = value_and_image_grad(crop_and_resize, *sub)
    # Gradients sum many contributions per pixel: the order differs, so allow rounding.
    np.testing.assert_allclose(got_grad, want_grad, rtol=1e-5, atol=1e-5)


def test_out_of_range_samples_are_zero_and_get_no_gradient():
    image = tf.ones([1, 4, 4, 1])
    boxes = tf.constant([[1.2, 0.0, 1.5, 1.0], [-0.5, -0.5, 0.5, 0.5]])
    out, grad = value_and_image_grad(crop_and_resize, image, boxes, tf.constant([0, 0]), (3, 3))
    assert out[0].max() == 0
    np.testing.assert_array_equal(out[1, :, :, 0], [[0, 0, 0], [0, 1, 1], [0, 1, 1]])
    assert grad.sum() != 0 and np.isfinite(grad).all()


def test_empty_boxes_and_integer_images():
    image = tf.constant(np.arange(2 * 5 * 6 * 3).reshape(2, 5, 6, 3), tf.int32)
    boxes = tf.constant([[0.1, 0.2, 0.7, 0.9]])
    np.testing.assert_allclose(crop_and_resize(image, boxes, [1], (4, 4)),
                               tf.image.crop_and_resize(image, boxes, [1], (4, 4)), rtol=1e-6)
    out = crop_and_resize(tf.cast(image, tf.float32), tf.zeros([0, 4]), tf.zeros([0], tf.int32), (7, 7))
    assert out.shape == (0, 7, 7, 3)
    with pytest.raises(ValueError, match="bilinear"):
        crop_and_resize(image, boxes, [0], (2, 2), method="nearest")


def reference(fmap, box, size):
    """float64 crop of fmap [H, W, C] with TensorFlow's sampling; samples within EDGE_TOLERANCE
    of the edge read the edge pixel (see mrcnn.modeling.roi_align_gather)."""
    H, W, C = fmap.shape
    out = np.zeros(tuple(size) + (C,))

    def axis(lo, hi, n, crop):
        pos = [lo * (n - 1) + i * (hi - lo) * (n - 1) / (crop - 1) for i in range(crop)] if crop > 1 \
            else [0.5 * (lo + hi) * (n - 1)]
        tol = EDGE_TOLERANCE * n
        return [min(max(p, 0.0), n - 1.0) if -tol <= p <= n - 1 + tol else None for p in pos]

    for i, y in enumerate(axis(float(box[0]), float(box[2]), H, size[0])):
        for j, x in enumerate(axis(float(box[1]), float(box[3]), W, size[1])):
            if y is None or x is None:
                continue
            y0, x0 = int(np.floor(y)), int(np.floor(x))
            y1, x1 = min(y0 + 1, H - 1), min(x0 + 1, W - 1)
            fy, fx = y - y0, x - x0
            top = fmap[y0, x0] * (1 - fx) + fmap[y0, x1] * fx
            bottom = fmap[y1, x0] * (1 - fx) + fmap[y1, x1] * fx
            out[i, j] = top * (1 - fy) + bottom * fy
    return out


@pytest.mark.parametrize("size", [(7, 7), (14, 14)])
def test_boxes_clipped_to_the_image_read_the_edge_pixels_in_every_mode(size):
    """Proposals are clipped to [0, 1]: their last samples sit on the map's edge, where float
    rounding (and Grappler's / XLA's x / c -> x * (1 / c)) decides inside or outside."""
    rng = np.random.default_rng(6)
    image = tf.constant(rng.normal(size=(2, 128, 96, 3)).astype(np.float32))
    boxes = np.clip(rng.uniform(-0.5, 1.5, (60, 4)), 0, 1)
    boxes = tf.constant(np.concatenate([np.minimum(boxes[:, :2], boxes[:, 2:]),
                                        np.maximum(boxes[:, :2], boxes[:, 2:])], 1).astype(np.float32))
    box_ix = tf.constant(rng.integers(0, 2, 60).astype(np.int32))
    run = lambda i, b, x: crop_and_resize(i, b, x, size)   # noqa: E731
    eager = run(image, boxes, box_ix).numpy()
    graph = tf.function(run)(image, boxes, box_ix).numpy()
    xla = tf.function(run, jit_compile=True)(image, boxes, box_ix).numpy()
    want = np.stack([reference(image.numpy()[box_ix[n]], boxes.numpy()[n], size) for n in range(60)])
    for got in (eager, graph, xla):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # TensorFlow's kernel agrees wherever it did not put an edge sample outside (its zeros).
    tf_out = tf.image.crop_and_resize(image, boxes, box_ix, size).numpy()
    inside = tf_out != 0
    assert inside.mean() > 0.9
    np.testing.assert_allclose(eager[inside], tf_out[inside], rtol=1e-5, atol=1e-5)


def pyramid(seed=1, batch=2, channels=4, sizes=(32, 16, 8, 4)):
    rng = np.random.default_rng(seed)
    return [tf.constant(rng.normal(size=(batch, s, s, channels)).astype(np.float32)) for s in sizes]


def test_multilevel_equals_per_level_crop_and_resize():
    maps = pyramid()
    rng = np.random.default_rng(2)
    boxes = tf.constant(random_boxes(rng, 24))
    box_ix = tf.constant(rng.integers(0, 2, 24).astype(np.int32))
    levels = rng.integers(0, 4, 24).astype(np.int32)
    got = multilevel_crop_and_resize(maps, boxes, box_ix, levels, (7, 7)).numpy()
    for n in range(24):
        want = tf.image.crop_and_resize(maps[levels[n]], boxes[n:n + 1], box_ix[n:n + 1], (7, 7))
        np.testing.assert_allclose(got[n], want[0], rtol=1e-6, atol=1e-6, err_msg=f"box {n}")


def pixel_boxes(rng, n, image):
    """Boxes of 10..500 px (every pyramid level), some reaching outside the image, plus zeros."""
    side = rng.uniform(10, 500, n)
    cy, cx = rng.uniform(0, image, (2, n))
    boxes = np.stack([cy - side / 2, cx - side / 2, cy + side / 2, cx + side / 2], 1) / image
    boxes[:2] = 0.0
    return boxes.astype(np.float32)


def pyramid_case(seed=3, n=40):
    """Small maps for P2..P5; the layer's image size (512) only sets each box's level."""
    rng = np.random.default_rng(seed)
    maps = pyramid(seed, sizes=(32, 16, 8, 4))
    boxes = tf.constant(pixel_boxes(rng, n, 512))
    box_ix = tf.constant(rng.integers(0, 2, n).astype(np.int32))
    return maps, boxes, box_ix


SHAPES = tf.constant([[512.0, 512.0], [512.0, 512.0]])   # molded (H, W) of the 2 images
SHAPES_64 = tf.constant([[64.0, 64.0], [64.0, 64.0]])


def layer_value_and_grad(layer, maps, boxes, box_ix, jit=False):
    def run(maps):
        with tf.GradientTape() as tape:
            tape.watch(maps)
            out = layer(boxes, box_ix, maps, SHAPES)
            weights = tf.reshape(tf.cos(tf.range(tf.size(out), dtype=tf.float32)), tf.shape(out))
            loss = tf.reduce_sum(out * weights)
        return out, tape.gradient(loss, maps)
    fn = tf.function(run, jit_compile=True) if jit else run
    out, grads = fn(maps)
    return out.numpy(), [g.numpy() for g in grads]


@pytest.mark.parametrize("pool", [(7, 7), (14, 14)])
def test_pyramid_roi_align_gather_equals_default(pool):
    maps, boxes, box_ix = pyramid_case()
    levels = roi_levels(boxes, 512 * 512).numpy()
    assert set(levels.tolist()) == {2, 3, 4, 5}
    want, want_grads = layer_value_and_grad(PyramidROIAlign(pool), maps, boxes, box_ix)
    got, got_grads = layer_value_and_grad(PyramidROIAlign(pool, use_gather=True), maps, boxes, box_ix)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    for g, w in zip(got_grads, want_grads):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_pyramid_roi_align_gather_compiles_with_xla():
    maps, boxes, box_ix = pyramid_case(seed=4)
    layer = PyramidROIAlign((7, 7), use_gather=True)
    want, want_grads = layer_value_and_grad(layer, maps, boxes, box_ix)
    got, got_grads = layer_value_and_grad(layer, maps, boxes, box_ix, jit=True)
    # XLA may fuse multiply-adds: equal to float rounding, not bit for bit.
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    for g, w in zip(got_grads, want_grads):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


def test_crop_and_resize_compiles_with_xla():
    image, boxes, box_ix = setup(seed=5)
    fn = tf.function(lambda i, b, x: crop_and_resize(i, b, x, (7, 7)), jit_compile=True)
    np.testing.assert_allclose(fn(image, boxes, box_ix), tf.image.crop_and_resize(image, boxes, box_ix, (7, 7)),
                               rtol=1e-5, atol=1e-5)


def test_config_roundtrip_keeps_use_gather():
    clone = check_layer_config_roundtrip(PyramidROIAlign((7, 7), use_gather=True, name="r"))
    assert clone.use_gather is True
    assert PyramidROIAlign((7, 7)).get_config()["use_gather"] is False


@pytest.mark.slow
def test_second_stage_compiles_with_xla_and_equals_the_default_path():
    """A tiny model's box and mask heads on pooled ROIs, with their weight and feature-map
    gradients: XLA-compiled with use_gather=True equals the uncompiled crop_and_resize path."""
    import keras

    from mrcnn.model import MaskRCNN
    from tests.helpers import tiny_config

    keras.utils.set_random_seed(3)
    config = tiny_config(IMAGE_MIN_DIM=64, IMAGE_MAX_DIM=64, IMAGES_PER_GPU=2)
    net = MaskRCNN("training", config, "/tmp/mrcnn-test-logs").keras_model
    rng = np.random.default_rng(8)
    pyramid, _, _, _ = net.features(tf.constant(rng.normal(0, 50, (2, 64, 64, 3)).astype(np.float32)))
    corner = rng.uniform(0.05, 0.6, (2, 64, 2))
    cand = np.concatenate([corner, corner + rng.uniform(0.05, 0.35, (2, 64, 2))], -1).astype(np.float32)
    # Keep ROIs away from a pyramid-level boundary (round(log2) at .5): XLA's arithmetic may round
    # such a ROI to the neighbouring level, which is a different crop, not a rounding error.
    v = np.log2(np.sqrt((cand[..., 2] - cand[..., 0]) * (cand[..., 3] - cand[..., 1])) * 64 / 224)
    far = np.abs(v - np.floor(v) - 0.5) > 0.05
    rois = tf.constant(np.stack([cand[i][far[i]][:16] for i in range(2)]))
    variables = net.box_head.trainable_variables + net.mask_head.trainable_variables

    def stage(pyramid):
        with tf.GradientTape() as tape:
            tape.watch(pyramid)
            logits, _, deltas = net.classify(rois, pyramid, SHAPES_64)
            masks = net.segment(tf.reshape(rois, [-1, 4]), tf.repeat(tf.range(2), 16), tf.ones([32]), pyramid,
                                SHAPES_64)
            loss = tf.reduce_sum(logits ** 2) + tf.reduce_sum(deltas ** 2) + tf.reduce_sum(masks)
        return [logits, deltas, masks] + tape.gradient(loss, variables + list(pyramid[:4]))

    want = [t.numpy() for t in stage(pyramid)]
    net.roi_align_box.use_gather = net.roi_align_mask.use_gather = True
    eager_gather = [t.numpy() for t in stage(pyramid)]
    got = [t.numpy() for t in tf.function(stage, jit_compile=True)(pyramid)]
    assert len(got) == len(want) == len(eager_gather)
    # Outputs and weight gradients against the crop_and_resize path. The feature-map gradients
    # against the uncompiled gather path: TensorFlow's crop_and_resize gradient drops samples that
    # round onto a map's edge (see test_equals_tf_crop_and_resize_forward_and_gradient).
    n = 3 + len(variables)
    for g, w in zip(got, want[:n] + eager_gather[n:]):
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-4 * max(1.0, np.abs(w).max()))
