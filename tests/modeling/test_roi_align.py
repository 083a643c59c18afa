"""Pyramid ROIAlign against a NumPy crop-and-resize reference; level assignment; order; config."""
import math

import numpy as np
import pytest
import tensorflow as tf

from mrcnn import utils
from mrcnn.modeling.roi_align import PyramidROIAlign, molded_shapes, roi_levels
from tests.helpers import check_layer_config_roundtrip


def crop_and_resize_reference(fmap, box, size):
    """fmap [H, W, C], box (y1, x1, y2, x2) normalised, size (h, w) -> [h, w, C].

    Sample i is at y = y1*(H-1) + i*(y2-y1)*(H-1)/(h-1) (the box centre when h == 1), read
    bilinearly; samples outside [0, H-1] x [0, W-1] are 0.
    """
    H, W, C = fmap.shape
    h, w = size
    y1, x1, y2, x2 = box
    out = np.zeros((h, w, C), np.float64)
    for i in range(h):
        y = y1 * (H - 1) + i * (y2 - y1) * (H - 1) / (h - 1) if h > 1 else 0.5 * (y1 + y2) * (H - 1)
        for j in range(w):
            x = x1 * (W - 1) + j * (x2 - x1) * (W - 1) / (w - 1) if w > 1 else 0.5 * (x1 + x2) * (W - 1)
            if y < 0 or y > H - 1 or x < 0 or x > W - 1:
                continue
            y0, x0 = int(math.floor(y)), int(math.floor(x))
            ya, xa = min(y0 + 1, H - 1), min(x0 + 1, W - 1)
            fy, fx = y - y0, x - x0
            top = fmap[y0, x0] * (1 - fx) + fmap[y0, xa] * fx
            bottom = fmap[ya, x0] * (1 - fx) + fmap[ya, xa] * fx
            out[i, j] = top * (1 - fy) + bottom * fy
    return out


def pixel_box(cy, cx, side, image=1024):
    """A side x side pixel ROI centred at (cy, cx), normalised to the image."""
    return [(cy - side / 2) / image, (cx - side / 2) / image, (cy + side / 2) / image, (cx + side / 2) / image]


def test_reference_hand_worked():
    fmap = np.arange(16, dtype=np.float64).reshape(4, 4, 1)  # value = 4*row + col
    got = crop_and_resize_reference(fmap, (0, 0, 1, 1), (4, 4))[..., 0]
    np.testing.assert_allclose(got, fmap[..., 0])
    got = crop_and_resize_reference(fmap, (0, 0, 0.5, 0.5), (2, 2))[..., 0]
    np.testing.assert_allclose(got, [[0, 1.5], [6, 7.5]])  # samples at 0 and 1.5 along each axis
    assert crop_and_resize_reference(fmap, (1.2, 0, 1.5, 1), (2, 2)).max() == 0  # outside: extrapolated 0


@pytest.mark.parametrize("side,level", [(224, 4), (112, 3), (448, 5), (10, 2), (60, 2), (1000, 5),
                                        (160, 4), (155, 3), (320, 5), (316, 4)])
def test_level_assignment(side, level):
    # 4 + round(log2(side / 224)): 160/224 -> -0.49 -> 4; 155/224 -> -0.53 -> 3;
    # 320/224 -> 0.51 -> 5; 316/224 -> 0.50 -> 4 (0.4964).
    boxes = tf.constant([pixel_box(512, 512, side)], tf.float32)
    assert roi_levels(boxes, 1024 * 1024).numpy().tolist() == [level]


def test_level_depends_on_the_roi_pixel_size_only():
    # sqrt(h*w) is normalised, 224 / sqrt(image_area) is 224 px normalised: the level compares
    # the ROI's side in pixels with 224, whatever the image size.
    for image in (256, 512, 1024):
        box = tf.constant([pixel_box(image / 2, image / 2, 112, image=image)], tf.float32)
        assert roi_levels(box, image * image).numpy().tolist() == [3]
    zero = tf.zeros((1, 4))  # zero-area padding rows stay finite and go to P2
    assert roi_levels(zero, 1024 * 1024).numpy().tolist() == [2]


def test_matches_reference_and_keeps_input_order():
    rng = np.random.default_rng(0)
    image = 512
    sizes = [128, 64, 32, 16]  # P2..P5 of a 512 image
    maps = [rng.normal(0, 1, (2, s, s, 3)).astype(np.float32) for s in sizes]
    # Sides for every level, shuffled across levels; random centres make some boxes reach
    # outside the image (extrapolated zeros).
    sides = [20, 400, 150, 100, 60, 230, 450, 120, 25]
    boxes, levels = [], []
    for k, side in enumerate(sides):
        cy, cx = rng.uniform(0, image, 2)
        boxes.append(pixel_box(cy, cx, side, image=image))
        levels.append(int(np.clip(4 + round(math.log2(side / 224)), 2, 5)))
    boxes = np.array(boxes, np.float32)
    box_ix = np.array([k % 2 for k in range(len(sides))], np.int32)
    layer = PyramidROIAlign((7, 7))
    got = layer(boxes, box_ix, maps, np.full((2, 2), image, np.float32)).numpy()
    assert got.shape == (len(sides), 7, 7, 3)
    assert sorted(set(levels)) == [2, 3, 4, 5]
    np.testing.assert_array_equal(roi_levels(tf.constant(boxes), image * image).numpy(), levels)
    for k in range(len(sides)):
        want = crop_and_resize_reference(maps[levels[k] - 2][box_ix[k]], boxes[k], (7, 7))
        np.testing.assert_allclose(got[k], want, atol=1e-4, err_msg=f"ROI {k} (level {levels[k]})")


def test_each_roi_reads_its_own_level_and_image():
    """Constant maps (value = 10*level + image) make the level and image of every ROI visible."""
    sizes = [128, 64, 32, 16]  # P2..P5 of a 512 image
    maps = [np.stack([np.full((s, s, 1), 10 * (lvl + 2) + b, np.float32) for b in range(2)])
            for lvl, s in enumerate(sizes)]
    sides = [400, 10, 230, 100, 450, 60]
    boxes = np.array([pixel_box(256, 256, s, image=512) for s in sides], np.float32)
    box_ix = np.array([1, 0, 0, 1, 1, 0], np.int32)
    got = PyramidROIAlign((3, 3))(boxes, box_ix, maps, np.full((2, 2), 512, np.float32)).numpy()
    np.testing.assert_array_equal(got[:, 1, 1, 0], 10 * np.array([5, 2, 4, 3, 5, 2]) + box_ix)


def test_empty_rois():
    maps = [np.zeros((1, s, s, 2), np.float32) for s in (16, 8, 4, 2)]
    got = PyramidROIAlign((7, 7))(np.zeros((0, 4), np.float32), np.zeros((0,), np.int32), maps, np.full((1, 2), 64, np.float32))
    assert got.shape == (0, 7, 7, 2)


def test_config_roundtrip():
    clone = check_layer_config_roundtrip(PyramidROIAlign((14, 14), name="roi_align_mask"))
    assert clone.pool_shape == (14, 14)


# ------------------------------------------------------------------ level from the molded image's size
def matterport_levels(boxes, image_shape):
    """NumPy version of matterport's PyramidROIAlign level (model.py, master 3deaec5):
    image_area from image_meta's image_shape, tf.round (half to even, like np.round)."""
    h, w = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    area = float(image_shape[0] * image_shape[1])
    with np.errstate(divide="ignore"):
        level = np.log2(np.sqrt(h * w) / (224.0 / np.sqrt(area)))
    return np.minimum(5, np.maximum(2, 4 + np.round(level))).astype(int)


def level_maps(shape, batch=1):
    """P2..P5 for a molded (H, W), each constant at its level number: a crop reads its level."""
    return [np.full((batch, shape[0] // s, shape[1] // s, 1), s.bit_length() - 1, np.float32)
            for s in (4, 8, 16, 32)]


def disagreeing_boxes(molded, configured, count=4000, seed=0):
    """Random boxes inside the molded image whose level differs between the molded area
    (matterport) and the configured IMAGE_SHAPE area (the old formula here)."""
    rng = np.random.default_rng(seed)
    side = rng.uniform(20, 600, count)
    aspect = rng.uniform(0.5, 2, count)
    hh = np.minimum(side * np.sqrt(aspect), molded[0] - 2)
    ww = np.minimum(side / np.sqrt(aspect), molded[1] - 2)
    y1, x1 = rng.uniform(0, molded[0] - hh), rng.uniform(0, molded[1] - ww)
    boxes = np.stack([y1 / molded[0], x1 / molded[1], (y1 + hh) / molded[0], (x1 + ww) / molded[1]], 1)
    boxes = boxes.astype(np.float32)
    differ = matterport_levels(boxes, molded) != matterport_levels(boxes, configured)
    return boxes, differ


@pytest.mark.parametrize("mode,original,min_dim,max_dim", [
    ("pad64", (448, 640), 384, 512),   # the example: molded 384x512, IMAGE_SHAPE 512x512
    ("none", (320, 448), 800, 1024),   # molded = original 320x448, IMAGE_SHAPE 1024x1024
])
def test_level_uses_the_molded_image_size_from_image_meta(mode, original, min_dim, max_dim):
    molded, window, scale, _, _ = utils.resize_image(np.zeros(original + (3,), np.uint8), min_dim=min_dim,
                                                     max_dim=max_dim, mode=mode)
    meta = utils.compose_image_meta(0, original + (3,), molded.shape, window, scale, np.zeros(2, np.int32))
    image_shape = utils.parse_image_meta(meta[None])["image_shape"][0][:2]
    assert tuple(image_shape) == molded.shape[:2] != (max_dim, max_dim)
    boxes, differ = disagreeing_boxes(molded.shape[:2], (max_dim, max_dim))
    assert differ.sum() >= 20, "the case must separate the two formulas"
    want = matterport_levels(boxes, image_shape)
    layer = PyramidROIAlign((3, 3))
    got = layer(boxes, np.zeros(len(boxes), np.int32), level_maps(molded.shape[:2]), image_shape[None]).numpy()
    np.testing.assert_array_equal(got[:, 1, 1, 0], want)
    np.testing.assert_array_equal(roi_levels(tf.constant(boxes), float(np.prod(image_shape))).numpy(), want)
    # molded_shapes(images) is what the network passes: the batch tensor's own size.
    images = tf.zeros((2,) + molded.shape, tf.float32)
    np.testing.assert_array_equal(molded_shapes(images).numpy(), [image_shape, image_shape])


def test_each_roi_uses_its_own_images_area():
    """Per image, not the first image's (matterport): ROIs of image 1 use image 1's area."""
    boxes = np.array([pixel_box(100, 100, 112, image=448)] * 2, np.float32)
    shapes = np.array([[448, 448], [896, 896]], np.float32)   # 112 px vs 224 px sides
    got = PyramidROIAlign((3, 3))(boxes, np.array([0, 1], np.int32), level_maps((448, 448), 2), shapes)
    assert got.numpy()[:, 1, 1, 0].tolist() == [3, 4]


def test_training_graph_uses_the_molded_size(tmp_path, monkeypatch):
    """compute_losses gives ROIAlign the batch's molded area (64x64 images), not IMAGE_SHAPE's
    (128x128 in this pad64 config), for the box head and the mask head."""
    from mrcnn.modeling import roi_align
    from mrcnn.structures.anchors import get_anchors
    from mrcnn.data.data_pipeline import InputPipeline
    from mrcnn.model import MaskRCNN
    from mrcnn.engine.train_graph import TargetSpec, compute_losses
    from tests.train_helpers import first_batch, shapes, train_config

    small = train_config()
    ds = shapes(2, seed=21)
    batch = first_batch(InputPipeline(ds, small, ds.image_ids, seed=1))
    config = train_config(IMAGE_RESIZE_MODE="pad64", IMAGE_MAX_DIM=128)
    net = MaskRCNN("training", config, str(tmp_path)).keras_model
    areas, real = [], roi_align.roi_levels

    def spy(boxes, image_area):
        areas.append(np.unique(np.asarray(image_area)).tolist())
        return real(boxes, image_area)

    monkeypatch.setattr(roi_align, "roi_levels", spy)
    anchors = tf.constant(get_anchors(small, (64, 64), normalized=True))
    compute_losses(net, batch, anchors, TargetSpec.from_config(config), config.MEAN_PIXEL, training=True,
                   seed=tf.constant([1, 0], tf.int64))
    assert tuple(config.IMAGE_SHAPE[:2]) == (128, 128)
    assert areas == [[64.0 * 64]] * 2
