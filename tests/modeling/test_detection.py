"""DetectionLayer against a NumPy reference of matterport's refine_detections algorithm."""
import numpy as np
import pytest

from mrcnn import utils
from mrcnn.modeling.detection import DetectionLayer
from tests.helpers import check_layer_config_roundtrip

STD = np.array([0.1, 0.1, 0.2, 0.2], np.float32)


def reference_detections(rois, probs, deltas, window, max_instances, min_confidence, nms_threshold):
    """One image, matterport's order of operations. rois [R, 4], probs [R, C], deltas [R, C, 4],
    window [4] (all normalised) -> [max_instances, 6] (y1, x1, y2, x2, class_id, score)."""
    r = np.arange(len(rois))
    class_ids = probs.argmax(1)
    scores = probs[r, class_ids]
    boxes = utils.apply_box_deltas(rois, deltas[r, class_ids] * STD)
    wy1, wx1, wy2, wx2 = window
    boxes = np.stack([np.clip(boxes[:, 0], wy1, wy2), np.clip(boxes[:, 1], wx1, wx2),
                      np.clip(boxes[:, 2], wy1, wy2), np.clip(boxes[:, 3], wx1, wx2)], 1)
    keep = np.where((class_ids > 0) & (scores >= np.float32(min_confidence)))[0]
    kept = []
    for c in np.unique(class_ids[keep]):
        ix = keep[class_ids[keep] == c]
        kept.extend(ix[utils.non_max_suppression(boxes[ix], scores[ix], nms_threshold)[:max_instances]])
    kept = np.array(kept, int)
    kept = kept[np.argsort(-scores[kept], kind="stable")][:max_instances]
    out = np.zeros((max_instances, 6), np.float32)
    out[:len(kept)] = np.concatenate([boxes[kept], class_ids[kept, None], scores[kept, None]], 1)
    return out, len(kept)


def random_inputs(rng, batch, rois, classes, background_share=0.3):
    centres = rng.uniform(0.1, 0.9, (batch, rois, 2))
    sizes = rng.uniform(0.05, 0.5, (batch, rois, 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], -1).astype(np.float32)
    logits = rng.normal(0, 2, (batch, rois, classes))
    logits[..., 0] += np.where(rng.uniform(size=(batch, rois)) < background_share, 10, 0)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    deltas = rng.normal(0, 1, (batch, rois, classes, 4)).astype(np.float32)
    return boxes, probs.astype(np.float32), deltas


@pytest.mark.parametrize("max_instances,min_confidence,nms", [(100, 0.0, 0.3), (8, 0.5, 0.3), (30, 0.7, 0.5)])
def test_matches_numpy_reference(max_instances, min_confidence, nms):
    rng = np.random.default_rng(max_instances)
    rois, probs, deltas = random_inputs(rng, 2, 60, 5)
    windows = np.array([[0.0, 0.0, 1.0, 1.0], [0.1, 0.2, 0.8, 0.9]], np.float32)
    layer = DetectionLayer(max_instances, min_confidence, nms, STD)
    got = layer(rois, probs, deltas, windows).numpy()
    assert got.shape == (2, max_instances, 6) and got.dtype == np.float32
    for b in range(2):
        want, n = reference_detections(rois[b], probs[b], deltas[b], windows[b], max_instances,
                                       min_confidence, nms)
        assert 0 < n
        np.testing.assert_allclose(got[b], want, atol=1e-5, err_msg=f"image {b}")
        assert np.all(np.diff(got[b, :n, 5]) <= 0)  # descending scores
        assert np.all(got[b, n:] == 0)  # zero padding
    # Every box lies inside its window.
    valid = got[..., 4] > 0
    for b in range(2):
        y1, x1, y2, x2 = windows[b]
        boxes = got[b][valid[b], :4]
        assert np.all(boxes[:, [0, 2]] >= y1 - 1e-6) and np.all(boxes[:, [0, 2]] <= y2 + 1e-6)
        assert np.all(boxes[:, [1, 3]] >= x1 - 1e-6) and np.all(boxes[:, [1, 3]] <= x2 + 1e-6)


def test_no_detection_above_threshold_gives_zero_rows():
    rng = np.random.default_rng(3)
    rois, probs, deltas = random_inputs(rng, 2, 20, 4)
    probs[1] = [0.2, 0.3, 0.25, 0.25]  # image 1: best foreground score 0.3 < 0.7
    got = DetectionLayer(10, 0.7, 0.3, STD)(rois, probs, deltas, np.tile([[0, 0, 1, 1]], (2, 1))).numpy()
    assert np.all(got[1] == 0)
    all_background = np.tile(np.array([0.9, 0.05, 0.05], np.float32), (2, 5, 1))
    got = DetectionLayer(10, 0.0, 0.3, STD)(rois[:, :5], all_background, deltas[:, :5, :3],
                                            np.tile([[0, 0, 1, 1]], (2, 1))).numpy()
    assert np.all(got == 0)


def test_threshold_is_inclusive_and_nms_is_per_class():
    rois = np.array([[[0.1, 0.1, 0.5, 0.5], [0.1, 0.1, 0.5, 0.5], [0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]]],
                    np.float32)
    probs = np.array([[[0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.05, 0.9, 0.05], [0.3, 0.7, 0.0]]], np.float32)
    deltas = np.zeros((1, 4, 3, 4), np.float32)
    got = DetectionLayer(5, 0.7, 0.3, STD)(rois, probs, deltas, np.array([[0, 0, 1, 1]], np.float32)).numpy()[0]
    # Identical boxes: the class-1 duplicate (0.8) is suppressed by the class-1 0.9, the class-2
    # box survives (NMS per class); the 0.7 box is kept (score >= threshold).
    np.testing.assert_allclose(got[:3], [[0.1, 0.1, 0.5, 0.5, 1, 0.9], [0.1, 0.1, 0.5, 0.5, 2, 0.8],
                                         [0.6, 0.6, 0.9, 0.9, 1, 0.7]], atol=1e-6)
    assert np.all(got[3:] == 0)


def test_config_roundtrip():
    clone = check_layer_config_roundtrip(DetectionLayer(50, 0.5, 0.4, [0.1, 0.1, 0.2, 0.2], name="mrcnn_detection"))
    assert (clone.max_instances, clone.min_confidence, clone.nms_threshold) == (50, 0.5, 0.4)
