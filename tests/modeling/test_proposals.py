"""ProposalLayer against a NumPy reference: top-k, decode with std-dev, clip, greedy NMS, zero pad."""
import numpy as np
import pytest

from mrcnn import utils
from mrcnn.modeling.proposals import ProposalLayer
from tests.helpers import check_layer_config_roundtrip

STD = np.array([0.1, 0.1, 0.2, 0.2], np.float32)


def reference_proposals(scores, deltas, anchors, count, nms_threshold, pre_nms_limit):
    """One image. scores [A], deltas [A, 4] (divided by STD), anchors [A, 4] normalised."""
    order = np.argsort(-scores, kind="stable")[:pre_nms_limit]
    boxes = utils.apply_box_deltas(anchors[order], deltas[order] * STD)
    boxes = np.clip(boxes, 0.0, 1.0)
    keep = utils.non_max_suppression(boxes, scores[order], nms_threshold)[:count]
    out = np.zeros((count, 4), np.float32)
    out[:len(keep)] = boxes[keep]
    return out, len(keep)


def random_inputs(rng, batch, n):
    centres = rng.uniform(0.0, 1.0, (n, 2))
    sizes = rng.uniform(0.02, 0.4, (n, 2))
    anchors = np.concatenate([centres - sizes / 2, centres + sizes / 2], 1).astype(np.float32)
    fg = rng.uniform(0, 1, (batch, n)).astype(np.float32)  # distinct scores: no tie ambiguity
    probs = np.stack([1 - fg, fg], -1)
    deltas = rng.normal(0, 1, (batch, n, 4)).astype(np.float32)
    return probs, deltas, anchors


@pytest.mark.parametrize("count,pre_nms_limit", [(30, 200), (400, 300), (10, 1000)])
def test_matches_numpy_reference(count, pre_nms_limit):
    rng = np.random.default_rng(count)
    probs, deltas, anchors = random_inputs(rng, 2, 500)
    layer = ProposalLayer(count, 0.7, pre_nms_limit, STD)
    got = layer(probs, deltas, anchors).numpy()
    assert got.shape == (2, count, 4) and got.dtype == np.float32
    for b in range(2):
        want, kept = reference_proposals(probs[b, :, 1], deltas[b], anchors, count, 0.7, pre_nms_limit)
        np.testing.assert_allclose(got[b], want, atol=1e-5)
        if kept < count:  # fewer survivors than requested: zero rows at the end, none before
            assert np.all(got[b, kept:] == 0) and np.all(np.any(got[b, :kept] != 0, axis=1))
    assert np.all((got >= 0) & (got <= 1))


def test_sorted_by_score_and_per_image_anchors():
    """Rows come out in descending objectness; anchors may be given per image [B, A, 4]."""
    rng = np.random.default_rng(5)
    probs, _, anchors = random_inputs(rng, 2, 60)
    # Far-apart unit boxes on a grid never overlap, so NMS keeps all and order is by score only.
    grid = np.array([(i // 8, i % 8) for i in range(60)], np.float32) / 8.0
    anchors = np.concatenate([grid, grid + 0.05], 1)
    deltas = np.zeros((2, 60, 4), np.float32)
    per_image = np.stack([anchors, anchors[::-1]])
    got = ProposalLayer(60, 0.7, 6000, STD)(probs, deltas, per_image).numpy()
    for b in range(2):
        order = np.argsort(-probs[b, :, 1])
        np.testing.assert_allclose(got[b], per_image[b][order], atol=1e-6)


def test_nms_suppresses_overlaps():
    anchors = np.array([[0.1, 0.1, 0.5, 0.5], [0.11, 0.1, 0.51, 0.5], [0.6, 0.6, 0.9, 0.9]], np.float32)
    probs = np.array([[[0.1, 0.9], [0.2, 0.8], [0.3, 0.7]]], np.float32)
    got = ProposalLayer(4, 0.7, 10, STD)(probs, np.zeros((1, 3, 4), np.float32), anchors).numpy()[0]
    np.testing.assert_allclose(got, [anchors[0], anchors[2], [0, 0, 0, 0], [0, 0, 0, 0]], atol=1e-6)


def test_config_roundtrip():
    clone = check_layer_config_roundtrip(ProposalLayer(100, 0.6, 321, [0.1, 0.1, 0.2, 0.2], name="ROI"))
    assert (clone.proposal_count, clone.nms_threshold, clone.pre_nms_limit) == (100, 0.6, 321)
    assert clone.std_dev == (0.1, 0.1, 0.2, 0.2)
