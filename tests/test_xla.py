"""Graph pieces that XLA compiles (``tf.function(jit_compile=True)`` on CPU) and their equality
with the uncompiled graph: the proposal layer (padded NMS) and the static-shape second-stage
targets (against proposal_targets.detection_targets too). ROIAlign and the heads are covered in
tests/test_roi_align_gather.py."""
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.proposal_targets import detection_targets
from mrcnn.proposals import ProposalLayer
from mrcnn.static_targets import detection_targets_static
from tests.test_proposals import random_inputs


def test_proposal_layer_compiles_with_xla_and_equals_eager():
    rng = np.random.default_rng(4)
    probs, deltas, anchors = random_inputs(rng, 2, 300)
    layer = ProposalLayer(240, 0.5, pre_nms_limit=250)   # NMS keeps fewer than 240: zero rows
    eager = layer(probs, deltas, anchors).numpy()
    xla = tf.function(lambda p, d, a: layer(p, d, a), jit_compile=True)(probs, deltas, anchors).numpy()
    assert (eager == 0).all(axis=-1).any()   # padding rows were produced
    np.testing.assert_allclose(xla, eager, rtol=1e-5, atol=1e-6)


def _targets_by_roi(rois, cls, deltas, masks, npos):
    """{rounded roi: (class, deltas, mask)} of the positives and the set of negatives."""
    pos = {tuple(np.round(r, 5)): (c, np.round(d, 3), m) for r, c, d, m in
           zip(rois[:npos], cls[:npos], deltas[:npos], masks[:npos])}
    neg = {tuple(np.round(r, 5)) for r in rois[npos:] if r.any()}
    return pos, neg


@pytest.mark.parametrize("mini,n_pos,n_neg", [(False, 2, 6), (True, 2, 6), (True, 1, 20)])
def test_static_detection_targets_equal_the_dynamic_ones_and_compile(mini, n_pos, n_neg):
    """With no more candidates than slots both versions pick the same ROIs (in another order)
    with the same targets; with more (third case) the counts and layout agree; XLA == eager."""
    from tests.test_proposal_targets import make_config, scene

    props, ids, boxes, masks = scene(np.random.default_rng(5), n_pos=n_pos, n_neg=n_neg)
    cfg = make_config(rois=20, ratio=0.25, mini=mini, mini_shape=(64, 64))
    if mini:
        from mrcnn.utils import extract_bboxes, minimize_mask
        masks = minimize_mask(extract_bboxes(masks[..., :2]), masks[..., :2], (64, 64))
        masks = np.concatenate([masks, np.zeros((64, 64, 2), bool)], -1)
    args = (tf.constant(props, tf.float32), tf.constant(ids), tf.constant(boxes, tf.float32), tf.constant(masks))
    dynamic = [o.numpy() for o in detection_targets(*args, cfg, seed=(1, 2))]
    static = [o.numpy() for o in detection_targets_static(*args, cfg, seed=(1, 2))]
    fn = tf.function(lambda *a: detection_targets_static(*a, cfg, seed=(1, 2)), jit_compile=True)
    compiled = [o.numpy() for o in fn(*args)]
    for s, c in zip(static, compiled):
        np.testing.assert_allclose(c, s, rtol=1e-5, atol=1e-5)
    assert [o.shape for o in static] == [o.shape for o in dynamic]
    assert static[4] == dynamic[4]
    np.testing.assert_array_equal(static[0].any(1), dynamic[0].any(1))   # same layout of rows
    if n_neg <= 6:
        pos_s, neg_s = _targets_by_roi(*static)
        pos_d, neg_d = _targets_by_roi(*dynamic)
        assert pos_s.keys() == pos_d.keys() and neg_s == neg_d
        for k in pos_s:
            assert pos_s[k][0] == pos_d[k][0]
            np.testing.assert_allclose(pos_s[k][1], pos_d[k][1], atol=2e-3)
            np.testing.assert_array_equal(pos_s[k][2], pos_d[k][2])
