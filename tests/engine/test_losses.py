"""Tests for mrcnn.engine.losses against NumPy references, edge cases and a pinned value."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.engine import losses


def np_softmax_ce(labels, logits):
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return -np.take_along_axis(logp, labels[..., None], -1)[..., 0]


def np_smooth_l1(a, b):
    d = np.abs(a - b)
    return np.where(d < 1, 0.5 * d * d, d - 0.5)


def inputs(seed=0, B=2, A=12, R=5, T=6, C=4, M=5, S=4):
    rng = np.random.default_rng(seed)
    match = rng.choice([-1, 0, 1], (B, A), p=[0.4, 0.4, 0.2]).astype(np.int32)
    match[0, :3] = 1   # at least some positives
    class_logits = rng.normal(size=(B, T, C)).astype(np.float32)
    class_logits[1, :2, 2] = 5.0   # predicted as class 2, inactive in image 1
    return dict(
        rpn_match=match,
        rpn_logits=rng.normal(size=(B, A, 2)).astype(np.float32),
        target_bbox=rng.normal(size=(B, A, 4)).astype(np.float32)[:, :R],
        rpn_bbox=rng.normal(size=(B, A, 4)).astype(np.float32) * 2,
        target_ids=np.array([[1, 3, 0, 2, 0, 0], [2, 0, 0, 0, 0, 0]], np.int32)[:, :T],
        class_logits=class_logits,
        active=np.array([[1, 1, 1, 1], [1, 1, 0, 1]], np.float32),
        target_deltas=rng.normal(size=(B, T, 4)).astype(np.float32),
        pred_bbox=rng.normal(size=(B, T, C, 4)).astype(np.float32),
        target_masks=(rng.random((M, S, S)) > 0.5).astype(np.float32),
        mask_ids=np.array([1, 3, 2, 0, 0], np.int32)[:M],
        pred_masks=rng.uniform(0.01, 0.99, (M, S, S, C)).astype(np.float32),
        valid=np.array([True, True, True, False, False])[:M],
    )


def test_rpn_class_loss_matches_numpy():
    d = inputs()
    got = losses.rpn_class_loss(d["rpn_match"], d["rpn_logits"]).numpy()
    sel = d["rpn_match"] != 0
    want = np_softmax_ce((d["rpn_match"] == 1).astype(int), d["rpn_logits"])[sel].mean()
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # matterport's [B, A, 1] layout gives the same value
    np.testing.assert_allclose(losses.rpn_class_loss(d["rpn_match"][..., None], d["rpn_logits"]), got)


def test_rpn_bbox_loss_matches_numpy():
    d = inputs()
    got = losses.rpn_bbox_loss(d["target_bbox"], d["rpn_match"], d["rpn_bbox"]).numpy()
    terms = []
    for b in range(2):
        pos = np.flatnonzero(d["rpn_match"][b] == 1)[:5]
        terms.append(np_smooth_l1(d["target_bbox"][b, :len(pos)], d["rpn_bbox"][b, pos]))
    want = np.concatenate(terms).mean()
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_mrcnn_class_loss_matches_numpy_with_inactive_classes():
    d = inputs()
    got = losses.mrcnn_class_loss(d["target_ids"], d["class_logits"], d["active"]).numpy()
    ce = np_softmax_ce(d["target_ids"], d["class_logits"])
    pred_active = np.take_along_axis(d["active"], d["class_logits"].argmax(-1), 1)
    want = (ce * pred_active).sum() / pred_active.sum()
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert pred_active.min() == 0     # the case exercises the masking


def test_mrcnn_bbox_loss_matches_numpy():
    d = inputs()
    got = losses.mrcnn_bbox_loss(d["target_deltas"], d["target_ids"], d["pred_bbox"]).numpy()
    b, t = np.nonzero(d["target_ids"] > 0)
    pred = d["pred_bbox"][b, t, d["target_ids"][b, t]]
    want = np_smooth_l1(d["target_deltas"][b, t], pred).mean()
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_mrcnn_mask_loss_matches_numpy_probs_and_logits():
    d = inputs()
    got = losses.mrcnn_mask_loss(d["target_masks"], d["mask_ids"], d["pred_masks"], d["valid"]).numpy()
    v = np.flatnonzero(d["valid"])
    p = d["pred_masks"][v, :, :, d["mask_ids"][v]]            # [V, S, S]
    t = d["target_masks"][v]
    want = -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean()
    np.testing.assert_allclose(got, want, rtol=1e-5)
    logits = np.log(d["pred_masks"] / (1 - d["pred_masks"]))
    got2 = losses.mrcnn_mask_loss(d["target_masks"], d["mask_ids"], logits, d["valid"], from_logits=True)
    np.testing.assert_allclose(got2, want, rtol=1e-4)
    # Saturated probabilities are clipped, not infinite.
    hard = np.where(d["target_masks"][..., None] > 0, 0.0, 1.0) * np.ones_like(d["pred_masks"])
    assert np.isfinite(losses.mrcnn_mask_loss(d["target_masks"], d["mask_ids"], hard, d["valid"]).numpy())


def test_no_instances_give_zero_box_and_mask_terms():
    d = inputs()
    zeros_ids = np.zeros_like(d["target_ids"])
    none = np.zeros(5, bool)
    assert losses.mrcnn_bbox_loss(d["target_deltas"], zeros_ids, d["pred_bbox"]).numpy() == 0.0
    assert losses.mrcnn_mask_loss(d["target_masks"], d["mask_ids"], d["pred_masks"], none).numpy() == 0.0
    no_pos = np.where(d["rpn_match"] == 1, -1, d["rpn_match"])
    assert losses.rpn_bbox_loss(d["target_bbox"], no_pos, d["rpn_bbox"]).numpy() == 0.0
    # The class loss still scores the (background) ROIs.
    assert losses.mrcnn_class_loss(zeros_ids, d["class_logits"], d["active"]).numpy() > 0


def test_all_neutral_gives_zero_and_finite_gradients():
    d = inputs()
    neutral = np.zeros_like(d["rpn_match"])
    logits = tf.Variable(d["rpn_logits"])
    rpn_bbox = tf.Variable(d["rpn_bbox"])
    pred_bbox = tf.Variable(d["pred_bbox"])
    pred_masks = tf.Variable(np.clip(d["pred_masks"] * 0 + 1.0, 0, 1))   # saturated
    class_logits = tf.Variable(d["class_logits"])
    with tf.GradientTape() as tape:
        terms = [losses.rpn_class_loss(neutral, logits),
                 losses.rpn_bbox_loss(d["target_bbox"], neutral, rpn_bbox),
                 losses.mrcnn_bbox_loss(d["target_deltas"], np.zeros_like(d["target_ids"]), pred_bbox),
                 losses.mrcnn_mask_loss(d["target_masks"], d["mask_ids"], pred_masks, np.zeros(5, bool)),
                 losses.mrcnn_class_loss(d["target_ids"], class_logits, np.zeros_like(d["active"]))]
        total = tf.add_n(terms)
    assert [float(t) for t in terms] == [0.0] * 5
    grads = tape.gradient(total, [logits, rpn_bbox, pred_bbox, pred_masks, class_logits])
    for g in grads:
        assert g is not None and np.isfinite(g.numpy()).all() and not g.numpy().any()


def test_pinned_values_under_fixed_seed():
    d = inputs(seed=123)
    got = [losses.rpn_class_loss(d["rpn_match"], d["rpn_logits"]),
           losses.rpn_bbox_loss(d["target_bbox"], d["rpn_match"], d["rpn_bbox"]),
           losses.mrcnn_class_loss(d["target_ids"], d["class_logits"], d["active"]),
           losses.mrcnn_bbox_loss(d["target_deltas"], d["target_ids"], d["pred_bbox"]),
           losses.mrcnn_mask_loss(d["target_masks"], d["mask_ids"], d["pred_masks"], d["valid"])]
    for t in got:
        assert t.dtype == tf.float32 and t.shape == ()
    np.testing.assert_allclose([float(t) for t in got], PINNED, rtol=1e-5)


# Computed once with this code (each term is also checked against NumPy above).
PINNED = [1.0585574, 1.5763133, 1.8337522, 1.0351948, 0.9378698]


def test_l2_weight_decay_excludes_batchnorm_scale_and_shift():
    conv = keras.layers.Conv2D(3, 2, name="res2a_branch2a")
    bn = keras.layers.BatchNormalization(name="bn2a_branch2a")
    x = keras.Input((6, 6, 2))
    keras.Model(x, bn(conv(x)))
    bn.gamma.assign(np.full(3, 5.0, np.float32))
    bn.beta.assign(np.full(3, 7.0, np.float32))
    variables = conv.trainable_weights + bn.trainable_weights
    assert len(variables) == 4
    got = losses.l2_weight_decay(variables, 1e-3).numpy()
    k, b = conv.kernel.numpy(), conv.bias.numpy()
    want = 1e-3 * ((k ** 2).sum() / k.size + (b ** 2).sum() / b.size)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # Plain tf.Variables are recognised by name too.
    tv = [tf.Variable([3.0, 4.0], name="w"), tf.Variable([100.0], name="gamma")]
    np.testing.assert_allclose(losses.l2_weight_decay(tv, 0.1).numpy(), 0.1 * 25 / 2, rtol=1e-6)
    assert losses.l2_weight_decay([], 0.1).numpy() == 0.0
