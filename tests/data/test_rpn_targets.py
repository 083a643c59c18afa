"""Tests for mrcnn.data.rpn_targets (NumPy only): hand-built cases and a dense reference."""
import numpy as np
import pytest

from mrcnn.data.rpn_targets import AnchorIndex, build_rpn_targets

STD = np.array([0.1, 0.1, 0.2, 0.2])


def pyramid_anchors(size, scales, ratios=(0.5, 1, 2), strides=(4, 8, 16, 32, 64)):
    """Matterport's anchor layout (level, row-major position, ratio), written independently."""
    out = []
    for scale, stride in zip(scales, strides):
        n = int(np.ceil(size / stride))
        for cy in np.arange(n) * stride:
            for cx in np.arange(n) * stride:
                for r in ratios:
                    h, w = scale / np.sqrt(r), scale * np.sqrt(r)
                    out.append([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2])
    return np.array(out)


def iou_ref(a, b):
    """Plain-loop IoU of one box pair."""
    ih = min(a[2], b[2]) - max(a[0], b[0])
    iw = min(a[3], b[3]) - max(a[1], b[1])
    if ih <= 0 or iw <= 0:
        return 0.0
    inter = ih * iw
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def labels_ref(anchors, ids, boxes):
    """Dense reference of the labels before subsampling, and each anchor's best GT."""
    real, crowd = boxes[ids > 0], boxes[ids < 0]
    ov = np.array([[iou_ref(a, g) for g in real] for a in anchors]).reshape(len(anchors), -1)
    cov = np.array([[iou_ref(a, g) for g in crowd] for a in anchors]).reshape(len(anchors), -1)
    amax = ov.max(1) if ov.shape[1] else np.zeros(len(anchors))
    near_crowd = (cov >= 0.001).any(1) if cov.shape[1] else np.zeros(len(anchors), bool)
    m = np.zeros(len(anchors), np.int32)
    m[(amax < 0.3) & ~near_crowd] = -1
    for j in range(ov.shape[1]):
        gm = ov[:, j].max()
        if gm > 0:
            m[ov[:, j] >= gm * (1 - 1e-5)] = 1
    m[amax >= 0.7] = 1
    best = ov.argmax(1) if ov.shape[1] else np.zeros(len(anchors), int)
    return m, best, real


def deltas_ref(a, g):
    ah, aw = a[2] - a[0], a[3] - a[1]
    gh, gw = g[2] - g[0], g[3] - g[1]
    return np.array([(g[0] + gh / 2 - a[0] - ah / 2) / ah, (g[1] + gw / 2 - a[1] - aw / 2) / aw,
                     np.log(gh / ah), np.log(gw / aw)]) / STD


def test_hand_built_counts():
    anchors = np.array([[0, 0, 10, 10], [0, 5, 10, 15], [20, 20, 30, 30], [50, 50, 60, 60]], float)
    m, bbox = build_rpn_targets(anchors, np.array([1]), np.array([[0, 0, 10, 10]], float),
                                256, STD, np.random.default_rng(0))
    # IoUs: 1, 1/3 (neutral), 0, 0.
    assert m.dtype == np.int32 and bbox.dtype == np.float32
    assert m.tolist() == [1, 0, -1, -1]
    assert bbox.shape == (256, 4)
    np.testing.assert_allclose(bbox[0], 0, atol=1e-7)   # identical box: zero deltas
    assert not bbox[1:].any()


def test_ties_when_no_anchor_reaches_07():
    gt = np.array([[0, 0, 10, 10]], float)
    anchors = np.array([[0, -5, 10, 5],      # IoU 1/3, tied best
                        [0, 5, 10, 15],      # IoU 1/3, tied best
                        [0, 0, 10, 40],      # IoU 1/4 -> negative
                        [40, 40, 50, 50]], float)
    m, bbox = build_rpn_targets(anchors, np.array([1]), gt, 256, STD, np.random.default_rng(0))
    assert m.tolist() == [1, 1, -1, -1]
    np.testing.assert_allclose(bbox[0], deltas_ref(anchors[0], gt[0]), rtol=1e-6)
    np.testing.assert_allclose(bbox[1], deltas_ref(anchors[1], gt[0]), rtol=1e-6)


def test_best_anchor_positive_even_below_negative_threshold():
    anchors = np.array([[0, 0, 10, 10], [100, 100, 110, 110]], float)
    gt = np.array([[2, 4, 12, 24]], float)           # IoU 48/252 = 0.19 with anchor 0
    m, bbox = build_rpn_targets(anchors, np.array([3]), gt, 256, STD, np.random.default_rng(0))
    assert m.tolist() == [1, -1]
    # Hand computation: anchor cy=cx=5, h=w=10; GT cy=7, cx=14, h=10, w=20.
    np.testing.assert_allclose(bbox[0], [0.2 / 0.1, 0.9 / 0.1, 0.0, np.log(2) / 0.2], rtol=1e-6)


def test_rpn_bbox_rows_follow_anchor_order_and_best_gt():
    gts = np.array([[50, 50, 70, 90], [0, 0, 20, 20]], float)
    anchors = np.array([[0, 1, 20, 21], [200, 200, 210, 210], [50, 52, 70, 92]], float)
    m, bbox = build_rpn_targets(anchors, np.array([1, 2]), gts, 256, STD, np.random.default_rng(0))
    assert m.tolist() == [1, -1, 1]
    np.testing.assert_allclose(bbox[0], deltas_ref(anchors[0], gts[1]), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(bbox[1], deltas_ref(anchors[2], gts[0]), rtol=1e-6, atol=1e-7)
    assert not bbox[2:].any()


def test_positive_cap_and_negative_fill():
    gt = np.array([[0, 0, 10, 10]], float)
    pos = np.repeat(gt, 300, axis=0)                               # 300 IoU-1 anchors
    neg = np.array([[100 + i, 100, 110 + i, 110] for i in range(500)], float)
    anchors = np.concatenate([pos, neg])
    m, bbox = build_rpn_targets(anchors, np.array([1]), gt, 256, STD, np.random.default_rng(1))
    assert (m == 1).sum() == 128 and (m == -1).sum() == 128 and (m == 0).sum() == 800 - 256
    assert set(np.flatnonzero(m == 1)) <= set(range(300))
    assert np.abs(bbox[:128]).max() < 1e-6 and not bbox[128:].any()
    # Few positives: negatives fill the rest of the budget.
    m2, _ = build_rpn_targets(anchors[295:], np.array([1]), gt, 256, STD, np.random.default_rng(1))
    assert (m2 == 1).sum() == 5 and (m2 == -1).sum() == 251


def test_crowd_boxes():
    anchors = np.array([[0, 0, 10, 10],       # equals the crowd box: not matched, not negative
                        [9, 9, 19, 19],       # IoU 1/199 >= 0.001 with crowd: neutral
                        [60, 60, 70, 70],     # matches the real GT
                        [200, 200, 210, 210]], float)
    ids = np.array([-1, 2])
    boxes = np.array([[0, 0, 10, 10], [60, 60, 70, 70]], float)
    m, _ = build_rpn_targets(anchors, ids, boxes, 256, STD, np.random.default_rng(0))
    assert m.tolist() == [0, 0, 1, -1]
    # Only crowds: no positives, crowd-adjacent anchors still not negative.
    m, bbox = build_rpn_targets(anchors, ids[:1], boxes[:1], 256, STD, np.random.default_rng(0))
    assert m.tolist() == [0, 0, -1, -1] and not bbox.any()


def test_empty_gt_gives_exactly_budget_negatives():
    anchors = pyramid_anchors(64, (8, 16, 32, 64, 128))
    for ids, boxes in [(np.zeros(0, np.int32), np.zeros((0, 4))),
                       (np.zeros(3, np.int32), np.zeros((3, 4)))]:   # zero rows = padding
        m, bbox = build_rpn_targets(anchors, ids, boxes, 64, STD, np.random.default_rng(0))
        assert (m == -1).sum() == 64 and (m == 1).sum() == 0
        assert bbox.shape == (64, 4) and not bbox.any()


def test_determinism_under_seed():
    anchors = pyramid_anchors(128, (8, 16, 32, 64, 128))
    boxes = np.array([[10, 10, 60, 50], [70, 20, 120, 100], [5, 80, 30, 126]], float)
    ids = np.array([1, 1, 2])
    a = build_rpn_targets(anchors, ids, boxes, 32, STD, np.random.default_rng(7))
    b = build_rpn_targets(anchors, ids, boxes, 32, STD, np.random.default_rng(7))
    c = build_rpn_targets(anchors, ids, boxes, 32, STD, np.random.default_rng(8))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("seed", range(6))
def test_matches_dense_reference_without_subsampling(seed):
    """Sparse index == dense matterport rule (ties included) on random boxes, crowds, tiny boxes."""
    rng = np.random.default_rng(seed)
    anchors = pyramid_anchors(128, (8, 16, 32, 64, 128))
    n = int(rng.integers(1, 12))
    y1, x1 = rng.uniform(-5, 120, n), rng.uniform(-5, 120, n)
    h, w = np.exp(rng.uniform(np.log(1), np.log(140), n)), np.exp(rng.uniform(np.log(1), np.log(140), n))
    boxes = np.round(np.stack([y1, x1, y1 + h, x1 + w], 1))
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    ids = rng.choice([-1, 1, 2, 3], n, p=[0.15, 0.45, 0.2, 0.2])
    m_ref, best, real = labels_ref(anchors, ids, boxes)
    m, bbox = build_rpn_targets(anchors, ids, boxes, 10 ** 6, STD, rng)
    np.testing.assert_array_equal(m, m_ref)
    pos = np.flatnonzero(m_ref == 1)
    want = np.array([deltas_ref(anchors[i], real[best[i]]) for i in pos]).reshape(-1, 4)
    np.testing.assert_allclose(bbox[:len(pos)], want, rtol=1e-5, atol=1e-5)
    assert not bbox[len(pos):].any()


def test_prebuilt_index_equals_array_and_bad_shapes():
    anchors = pyramid_anchors(64, (8, 16, 32, 64, 128))
    boxes = np.array([[4, 4, 30, 40]], float)
    a = build_rpn_targets(anchors, [1], boxes, 32, STD, np.random.default_rng(3))
    b = build_rpn_targets(AnchorIndex(anchors), [1], boxes, 32, STD, np.random.default_rng(3))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="anchors must be"):
        AnchorIndex(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="gt_class_ids has 2 rows"):
        build_rpn_targets(anchors, [1, 2], boxes, 32, STD)
