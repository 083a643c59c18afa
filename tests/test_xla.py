"""Graph pieces that XLA compiles (``tf.function(jit_compile=True)`` on CPU) and their equality
with the uncompiled graph: the proposal layer (padded NMS). ROIAlign and the heads are covered
in tests/test_roi_align_gather.py."""
import numpy as np
import tensorflow as tf

from mrcnn.proposals import ProposalLayer
from tests.test_proposals import random_inputs


def test_proposal_layer_compiles_with_xla_and_equals_eager():
    rng = np.random.default_rng(4)
    probs, deltas, anchors = random_inputs(rng, 2, 300)
    layer = ProposalLayer(240, 0.5, pre_nms_limit=250)   # NMS keeps fewer than 240: zero rows
    eager = layer(probs, deltas, anchors).numpy()
    xla = tf.function(lambda p, d, a: layer(p, d, a), jit_compile=True)(probs, deltas, anchors).numpy()
    assert (eager == 0).all(axis=-1).any()   # padding rows were produced
    np.testing.assert_allclose(xla, eager, rtol=1e-5, atol=1e-6)
