"""Tests for mrcnn.engine.proposal_targets: hand-built images, NumPy references."""
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.config import Config
from mrcnn.engine.proposal_targets import TargetSpec, batch_detection_targets, detection_targets, target_sizes

STD = np.array([0.1, 0.1, 0.2, 0.2])


def make_config(rois=20, ratio=0.25, mini=False, mini_shape=(56, 56), mask=28, include_gt=True):
    class C(Config):
        TRAIN_ROIS_PER_IMAGE = rois
        ROI_POSITIVE_RATIO = ratio
        USE_MINI_MASK = mini
        MINI_MASK_SHAPE = mini_shape
        MASK_POOL_SIZE = mask // 2
        MASK_SHAPE = [mask, mask]
        ROI_INCLUDE_GT = include_gt
    return TargetSpec.from_config(C())


def norm(px, size):
    """Pixel boxes -> matterport normalised coordinates."""
    return (np.asarray(px, float) - [0, 0, 1, 1]) / (size - 1)


def iou_np(a, b):
    ih = np.maximum(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0)
    iw = np.maximum(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0)
    inter = ih * iw
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def deltas_np(r, g):
    h, w = r[:, 2] - r[:, 0], r[:, 3] - r[:, 1]
    gh, gw = g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]
    d = np.stack([(g[:, 0] + gh / 2 - r[:, 0] - h / 2) / h, (g[:, 1] + gw / 2 - r[:, 1] - w / 2) / w,
                  np.log(gh / h), np.log(gw / w)], 1)
    return d / STD


def scene(rng, n_pos=10, n_neg=20, n_pad=5, size=128):
    """Two GTs (padded to 4), jittered positives, far negatives, zero padding rows."""
    gt_px = np.array([[10, 10, 50, 60], [70, 60, 120, 110], [0, 0, 0, 0], [0, 0, 0, 0]], float)
    ids = np.array([1, 2, 0, 0], np.int32)
    pos = []
    while len(pos) < n_pos:
        g = gt_px[len(pos) % 2]
        cand = g + rng.uniform(-4, 4, 4)
        if iou_np(cand[None], g[None])[0, 0] >= 0.55:
            pos.append(cand)
    neg = [[rng.uniform(0, 5), rng.uniform(60, 100), rng.uniform(8, 12), rng.uniform(110, 127)]
           for _ in range(n_neg)]
    props = np.concatenate([np.array(pos), np.array(neg).reshape(-1, 4), np.zeros((n_pad, 4))])
    masks = np.zeros((size, size, 4), bool)
    for k, g in enumerate(gt_px[:2].astype(int)):
        masks[g[0]:g[2], g[1]:g[3], k] = True
    return norm(props, size) * (props.any(1, keepdims=True)), ids, norm(gt_px, size) * (ids[:, None] != 0), masks


def run(props, ids, boxes, masks, cfg, seed=(1, 2)):
    out = detection_targets(tf.constant(props, tf.float32), tf.constant(ids), tf.constant(boxes, tf.float32),
                            tf.constant(masks), cfg, seed=seed)
    return [o.numpy() for o in out]


def test_counts_ratio_layout_and_deltas():
    props, ids, boxes, masks = scene(np.random.default_rng(0))
    cfg = make_config(rois=20, ratio=0.25)
    assert target_sizes(20, 0.25) == (20, 5) == cfg.sizes
    rois, cls, deltas, mt, npos = run(props, ids, boxes, masks, cfg)
    assert rois.shape == (20, 4) and cls.dtype == np.int32 and mt.shape == (5, 28, 28)
    assert npos == 5                                     # 12 positives (10 + 2 GT) capped at P
    ov = iou_np(rois.astype(float), boxes[:2])
    assert (ov[:5].max(1) >= 0.5).all() and (ov[5:].max(1) < 0.5).all()
    assert rois.any(1).all()                             # 5 / 0.25 - 5 = 15 negatives fill T
    np.testing.assert_array_equal(cls[:5], ids[ov[:5].argmax(1)])
    assert not cls[5:].any() and not deltas[5:].any()
    want = deltas_np(rois[:5].astype(float), boxes[ov[:5].argmax(1)])
    np.testing.assert_allclose(deltas[:5], want, rtol=1e-4, atol=1e-4)
    assert set(np.unique(mt)) <= {0.0, 1.0}


def test_ratio_rule_leaves_zero_padding():
    props, ids, boxes, masks = scene(np.random.default_rng(1), n_pos=1, n_neg=20)
    rois, cls, deltas, mt, npos = run(props, ids, boxes, masks, make_config(rois=20, ratio=0.25))
    # 1 proposal + 2 GT boxes positive -> int(3 / 0.25) - 3 = 9 negatives, 8 zero rows.
    assert npos == 3
    assert rois[:12].any(1).all() and not rois[12:].any()
    assert not cls[3:].any() and not mt[3:].any() and mt[:3].any(axis=(1, 2)).all()


def test_identity_crop_full_and_mini():
    rng = np.random.default_rng(2)
    pattern = rng.random((28, 28)) > 0.5
    size = 64
    gt_px = np.array([[10, 20, 38, 48]], float)
    full = np.zeros((size, size, 1), bool)
    full[10:38, 20:48, 0] = pattern
    boxes = norm(gt_px, size)
    no_props = np.zeros((3, 4))
    _, cls, _, mt, npos = run(no_props, np.array([4]), boxes, full, make_config(mini=False))
    assert npos == 1 and cls[0] == 4
    np.testing.assert_array_equal(mt[0], pattern)
    _, _, _, mt, _ = run(no_props, np.array([4]), boxes, pattern[..., None],
                         make_config(mini=True, mini_shape=(28, 28)))
    np.testing.assert_array_equal(mt[0], pattern)


def test_mini_mask_and_full_mask_agree():
    rng = np.random.default_rng(3)
    size = 128
    gt_px = np.array([[10, 10, 66, 66]], float)           # 56 x 56 box
    full = np.zeros((size, size, 1), bool)
    full[10:66, 10:66, 0] = rng.random((56, 56)) > 0.4
    mini = full[10:66, 10:66]                             # exact mini-mask at (56, 56)
    # ROIs 55 px tall/wide: pixel-centre span 54 = 27 steps of 2, so samples hit pixels.
    roi_px = np.array([[14, 12, 69, 67], [6, 8, 61, 63]], float)
    props, boxes = norm(roi_px, size), norm(gt_px, size)
    a = run(props, np.array([1]), boxes, full, make_config(mini=False))
    b = run(props, np.array([1]), boxes, mini, make_config(mini=True, mini_shape=(56, 56)))
    assert a[4] == b[4] == 3
    np.testing.assert_allclose(a[0], b[0])
    np.testing.assert_array_equal(a[3], b[3])
    assert a[3][:3].sum() > 100
    # ROI 0 samples every 2nd pixel from (14, 12): a plain strided slice of the full mask.
    row = int(np.flatnonzero(np.abs(a[0] - props[0]).max(1) < 1e-6)[0])
    np.testing.assert_array_equal(a[3][row], full[14:69:2, 12:67:2, 0])


def test_no_gt_image_gives_all_negatives():
    rng = np.random.default_rng(4)
    props = norm(np.sort(rng.uniform(0, 127, (30, 4)).reshape(30, 2, 2), axis=1).transpose(0, 2, 1)
                 .reshape(30, 4)[:, [0, 1, 2, 3]], 128)
    ids = np.zeros(3, np.int32)
    rois, cls, deltas, mt, npos = run(props, ids, np.zeros((3, 4)), np.zeros((128, 128, 3), bool),
                                      make_config(rois=20))
    assert npos == 0 and rois.any(1).all() and not cls.any() and not deltas.any() and not mt.any()


def test_only_gt_proposals_and_crowds():
    size = 64
    gt_px = np.array([[5, 5, 25, 25], [30, 30, 60, 60], [0, 0, 20, 20]], float)
    ids = np.array([1, 2, -1], np.int32)
    masks = np.ones((size, size, 3), bool)
    rois, cls, _, mt, npos = run(np.zeros((4, 4)), ids, norm(gt_px, size), masks, make_config())
    assert npos == 2 and sorted(cls[:2].tolist()) == [1, 2] and not rois[2:].any()
    assert mt[:2].all() and not mt[2:].any()
    # A proposal on the crowd is neither positive nor negative; one far away is negative.
    props = norm(np.array([[1, 1, 19, 19], [40, 2, 60, 20]], float), size)
    rois, cls, _, _, npos = run(props, ids, norm(gt_px, size), masks, make_config(include_gt=False))
    assert npos == 0 and np.allclose(rois[0], props[1]) and not rois[1:].any()


def test_batch_matches_single_and_is_deterministic():
    r0, r1 = np.random.default_rng(5), np.random.default_rng(6)
    s0, s1 = scene(r0), scene(r1)
    batch = [tf.constant(np.stack([a, b])) for a, b in zip(s0, s1)]
    cfg = make_config(rois=20, ratio=0.25)
    out1 = [o.numpy() for o in batch_detection_targets(*batch, cfg, seed=tf.constant([3, 4]))]
    out2 = [o.numpy() for o in batch_detection_targets(*batch, cfg, seed=tf.constant([3, 4]))]
    assert out1[0].shape == (2, 20, 4) and out1[3].shape == (2, 5, 28, 28) and out1[4].tolist() == [5, 5]
    for a, b in zip(out1, out2):
        np.testing.assert_array_equal(a, b)
    single = run(*s1, cfg, seed=tf.random.experimental.stateless_fold_in(tf.constant([3, 4], tf.int64), 1))
    for a, b in zip(out1, single):
        np.testing.assert_array_equal(a[1], b)
    other = batch_detection_targets(*batch, cfg, seed=tf.constant([9, 9]))[0].numpy()
    assert not np.array_equal(other, out1[0])
    unseeded = batch_detection_targets(*batch, cfg)
    assert unseeded[4].numpy().tolist() == [5, 5]


def test_graph_mode_equals_eager():
    s0 = scene(np.random.default_rng(7))
    batch = [tf.constant(a[None]) for a in s0]
    cfg = make_config(rois=20, ratio=0.25, mini=False)
    fn = tf.function(lambda p, c, g, m: batch_detection_targets(p, c, g, m, cfg, seed=tf.constant([1, 1])))
    graph = fn(*batch)
    eager = batch_detection_targets(*batch, cfg, seed=tf.constant([1, 1]))
    for a, b in zip(graph, eager):
        assert a.shape == b.shape
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)   # fused float ops
