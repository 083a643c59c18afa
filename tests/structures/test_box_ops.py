"""mrcnn.structures.boxes_tf (TensorFlow) against the NumPy twins in mrcnn.utils and hand-worked values."""
import numpy as np
import pytest
import tensorflow as tf

from mrcnn import utils
from mrcnn.structures import boxes_tf as box_ops


def random_boxes(rng, n, size=100.0):
    yx = rng.uniform(0, size * 0.8, (n, 2))
    hw = rng.uniform(1, size * 0.5, (n, 2))
    return np.concatenate([yx, yx + hw], axis=1).astype(np.float32)


def test_iou_hand_worked():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 5, 15, 15], [0, 0, 10, 10], [10, 10, 20, 20], [0, 0, 5, 10]], np.float32)
    got = box_ops.iou_matrix(a, b).numpy()
    np.testing.assert_allclose(got, [[25 / 175, 1.0, 0.0, 0.5]], rtol=1e-6)


def test_iou_matches_numpy_with_zero_padding_rows():
    rng = np.random.default_rng(0)
    b1 = random_boxes(rng, 7)
    b2 = np.concatenate([random_boxes(rng, 5), np.zeros((3, 4), np.float32)])  # padding rows
    b1[3] = 0  # a padding row on the other side too
    got = box_ops.iou_matrix(b1, b2).numpy()
    assert got.shape == (7, 8) and got.dtype == np.float32
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, utils.compute_overlaps(b1, b2), rtol=1e-5, atol=1e-7)
    assert np.all(got[:, 5:] == 0) and np.all(got[3] == 0)


def test_encode_decode_round_trip_with_std_dev():
    rng = np.random.default_rng(1)
    boxes, gt = random_boxes(rng, 20), random_boxes(rng, 20)
    std = [0.1, 0.1, 0.2, 0.2]
    deltas = box_ops.encode_deltas(boxes, gt, std).numpy()
    # Same deltas as matterport's numpy box_refinement, divided by the std-dev.
    np.testing.assert_allclose(deltas, utils.box_refinement(boxes, gt) / np.array(std), rtol=1e-4, atol=1e-4)
    back = box_ops.decode_deltas(boxes, deltas, std).numpy()
    np.testing.assert_allclose(back, gt, rtol=1e-5, atol=1e-3)
    # Without std-dev: decode equals numpy apply_box_deltas.
    raw = rng.normal(0, 0.3, (20, 4)).astype(np.float32)
    np.testing.assert_allclose(box_ops.decode_deltas(boxes, raw).numpy(),
                               utils.apply_box_deltas(boxes, raw), rtol=1e-5, atol=1e-4)


def test_decode_hand_worked_and_batched():
    box = np.array([[10, 20, 30, 60]], np.float32)  # h 20, w 40, centre (20, 40)
    deltas = np.array([[0.5, -0.25, np.log(2), 0.0]], np.float32)
    # centre y 20 + 10 = 30, x 40 - 10 = 30, h 40, w 40
    np.testing.assert_allclose(box_ops.decode_deltas(box, deltas).numpy(), [[10, 10, 50, 50]], atol=1e-5)
    # Leading batch dimension [B, N, 4] and std-dev scaling.
    batched = box_ops.decode_deltas(np.stack([box, box]), np.stack([deltas, deltas]) / [0.1, 0.1, 0.2, 0.2],
                                    [0.1, 0.1, 0.2, 0.2]).numpy()
    np.testing.assert_allclose(batched, [[[10, 10, 50, 50]]] * 2, atol=1e-4)


def test_clip_single_window():
    boxes = np.array([[-5, 2, 50, 200], [10, 10, 20, 20], [120, 120, 130, 130]], np.float32)
    got = box_ops.clip_boxes(boxes, np.array([0, 0, 100, 100], np.float32)).numpy()
    np.testing.assert_array_equal(got, [[0, 2, 50, 100], [10, 10, 20, 20], [100, 100, 100, 100]])


def test_clip_per_image_windows():
    boxes = np.array([[[0.0, 0.0, 1.0, 1.0], [0.2, 0.3, 0.4, 0.5]],
                      [[0.0, 0.0, 1.0, 1.0], [0.2, 0.3, 0.4, 0.5]]], np.float32)
    windows = np.array([[0.1, 0.1, 0.9, 0.9], [0.25, 0.0, 1.0, 0.45]], np.float32)
    got = box_ops.clip_boxes(boxes, windows).numpy()
    np.testing.assert_allclose(got[0], [[0.1, 0.1, 0.9, 0.9], [0.2, 0.3, 0.4, 0.5]])
    np.testing.assert_allclose(got[1], [[0.25, 0.0, 1.0, 0.45], [0.25, 0.3, 0.4, 0.45]])


def test_box_area_and_trim_zero_rows():
    boxes = np.array([[0, 0, 2, 3], [0, 0, 0, 0], [1, 1, 5, 2], [0, 0, 0, 0]], np.float32)
    np.testing.assert_array_equal(np.asarray(box_ops.box_area(tf.constant(boxes))), [6, 0, 4, 0])
    kept, keep = box_ops.trim_zero_rows(boxes)
    np.testing.assert_array_equal(kept.numpy(), boxes[[0, 2]])
    np.testing.assert_array_equal(keep.numpy(), [True, False, True, False])


@pytest.mark.parametrize("n", [0, 1])
def test_iou_empty_and_single(n):
    b = np.zeros((n, 4), np.float32)
    assert box_ops.iou_matrix(b, np.ones((3, 4), np.float32)).shape == (n, 3)


def test_norm_boxes_matches_the_numpy_twin_per_image():
    from mrcnn.structures import boxes as np_boxes
    from mrcnn.structures import boxes_tf

    rng = np.random.default_rng(5)
    shapes = np.array([[512, 384], [1024, 1024], [64, 640]], np.float32)
    windows = np.stack([rng.uniform(0, 30, 3), rng.uniform(0, 30, 3),
                        shapes[:, 0] - rng.uniform(0, 30, 3), shapes[:, 1] - rng.uniform(0, 30, 3)], 1)
    got = boxes_tf.norm_boxes(tf.constant(windows, tf.float32), tf.constant(shapes)).numpy()
    want = np.stack([np_boxes.norm_boxes(w[None], s)[0] for w, s in zip(windows, shapes.astype(int))])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got[1], [windows[1, 0] / 1023, windows[1, 1] / 1023,
                                        (windows[1, 2] - 1) / 1023, (windows[1, 3] - 1) / 1023], rtol=1e-6)
