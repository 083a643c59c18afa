"""Graph pieces that XLA compiles (``tf.function(jit_compile=True)`` on CPU) and their equality
with the uncompiled graph: the proposal layer (padded NMS) and the static-shape second-stage
targets (against proposal_targets.detection_targets too). ROIAlign and the heads are covered in
tests/modeling/test_roi_align_gather.py."""
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.engine.proposal_targets import detection_targets
from mrcnn.modeling.proposals import ProposalLayer
from mrcnn.engine.static_targets import detection_targets_static
from tests.modeling.test_proposals import random_inputs


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
    from tests.engine.test_proposal_targets import make_config, scene

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


@pytest.mark.slow
def test_xla_compiled_training_step_equals_the_uncompiled_one(tmp_path):
    """XLA_COMPILE=True on a tiny config: the Trainer's jit-compiled step gives the losses of the
    uncompiled static-shape forward pass at the same weights and seed, and the compiled
    gradients equal the uncompiled ones. Noise images: a flat background gives the RPN tied
    scores, which top_k orders differently with and without XLA."""
    import keras

    from mrcnn.structures.anchors import get_anchors
    from mrcnn.data.data_pipeline import InputPipeline
    from mrcnn.model import MaskRCNN
    from mrcnn.data.shapes import ShapesDataset
    from mrcnn.engine.train_graph import TargetSpec, total_loss
    from mrcnn.engine.train_graph_static import compute_losses_static
    from mrcnn.engine.training import Trainer
    from tests.helpers import tiny_config

    config = tiny_config(IMAGE_MIN_DIM=64, IMAGE_MAX_DIM=64, IMAGES_PER_GPU=2, XLA_COMPILE=True)
    keras.utils.set_random_seed(1)
    model = MaskRCNN("training", config, str(tmp_path))
    net = model.keras_model
    assert net.roi_align_box.use_gather and net.roi_align_mask.use_gather
    ds = ShapesDataset()
    ds.load_shapes(4, 64, 64, seed=1)
    ds.prepare()
    pipe = InputPipeline(ds, config, ds.image_ids, seed=1)
    batch = next(iter(pipe.stream(0, 1)))
    batch["image"] = tf.constant(np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3)).astype(np.uint8))
    anchors = tf.constant(get_anchors(config, (64, 64), normalized=True))
    model.set_trainable("all", verbose=0)
    variables = net.trainable_variables
    seed = tf.constant([1, 2], tf.int64)

    def forward(batch, seed):
        with tf.GradientTape() as tape:
            losses = compute_losses_static(net, batch, anchors, TargetSpec.from_config(config), config.MEAN_PIXEL,
                                           training=True, seed=seed)
            total = total_loss(losses, config.LOSS_WEIGHTS, config.WEIGHT_DECAY, variables)
        return losses, tape.gradient(total, variables)

    want, want_grads = tf.function(forward, autograph=False)(batch, seed)
    got, got_grads = tf.function(forward, autograph=False, jit_compile=True)(batch, seed)
    for k in want:
        np.testing.assert_allclose(float(got[k]), float(want[k]), rtol=1e-4, err_msg=k)
    for g, w in zip(got_grads, want_grads):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-3, atol=1e-3 * max(1.0, float(tf.reduce_max(tf.abs(w)))))
    step = Trainer(model).build_train_step(pipe)
    out = step(batch, seed)   # losses at the weights before the update
    for k in want:
        np.testing.assert_allclose(float(out[k]), float(want[k]), rtol=1e-4, err_msg=k)
    assert all(np.isfinite(v.numpy()).all() for v in variables)
