"""Training semantics against matterport's definitions, re-derived in NumPy.

matterport (``MaskRCNN.compile``): ``SGD(lr, momentum, clipnorm=GRADIENT_CLIP_NORM)`` on Keras 2
(tf.keras, i.e. each gradient tensor clipped to that norm on its own); loss = sum of the five
losses times LOSS_WEIGHTS plus ``WEIGHT_DECAY * sum(w^2) / size(w)`` over the trainable weights
whose name has neither "gamma" nor "beta". The SEED tests check reproducibility of ``train()``.
"""
import json

import numpy as np
import pytest
import tensorflow as tf

from mrcnn.structures.anchors import get_anchors
from mrcnn.config import Config
from mrcnn.data.data_pipeline import InputPipeline
from mrcnn.model import MaskRCNN
from mrcnn.engine.train_graph import LOSS_NAMES, TargetSpec, compute_losses, total_loss
from mrcnn.engine.steps import make_optimizer
from mrcnn.engine.training import Trainer
from tests.train_helpers import first_batch, shapes, train_config


def _clip_per_tensor(g, c):
    n = np.sqrt((g.astype(np.float64) ** 2).sum())
    return g * (c / max(n, c))


def _clip_global(grads, c):
    n = np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in grads))
    return [g * (c / max(n, c)) for g in grads]


def test_config_defaults_are_matterports():
    c = Config()
    assert c.GRADIENT_CLIP_MODE == "per_tensor" and c.GRADIENT_CLIP_NORM == 5.0
    assert c.WEIGHT_DECAY == 1e-4 and c.LEARNING_MOMENTUM == 0.9 and c.TRAIN_BN is False


@pytest.mark.parametrize("mode", ["per_tensor", "global"])
def test_optimizer_clipping_matches_numpy(mode):
    """First SGD step (zero velocity): w1 = w0 - lr * clip(g)."""
    rng = np.random.default_rng(0)
    shapes_ = [(3, 3, 4, 8), (8,), (20, 5)]
    w0 = [rng.normal(size=s).astype(np.float32) for s in shapes_]
    # Norms ~ 40, 0.3 and 10: one tensor below the limit of 5, two above.
    grads = [rng.normal(size=shapes_[0]) * 2.5, rng.normal(size=(8,)) * 0.1, rng.normal(size=(20, 5))]
    grads = [g.astype(np.float32) for g in grads]
    config = train_config(GRADIENT_CLIP_NORM=5.0, GRADIENT_CLIP_MODE=mode, LEARNING_RATE=0.1,
                          LEARNING_MOMENTUM=0.9)
    variables = [tf.Variable(w) for w in w0]
    opt = make_optimizer(config)
    opt.apply_gradients(zip([tf.constant(g) for g in grads], variables))
    want = ([_clip_per_tensor(g, 5.0) for g in grads] if mode == "per_tensor"
            else _clip_global(grads, 5.0))
    for v, w, g in zip(variables, w0, want):
        np.testing.assert_allclose(v.numpy(), w - 0.1 * g, rtol=1e-5, atol=1e-6)
    # Second step: momentum 0.9 on the clipped gradients (Keras 2 SGD: v = m v - lr g; w += v).
    opt.apply_gradients(zip([tf.constant(g) for g in grads], variables))
    for v, w, g in zip(variables, w0, want):
        np.testing.assert_allclose(v.numpy(), w - 0.1 * g - (0.9 * 0.1 * g + 0.1 * g), rtol=1e-5, atol=1e-6)


def _decay_numpy(variables, wd):
    total = 0.0
    for v in variables:
        if "gamma" in v.path or "beta" in v.path:
            continue
        x = v.numpy().astype(np.float64)
        total += wd * (x ** 2).sum() / x.size
    return total


def test_first_train_step_applies_matterports_loss_and_per_tensor_clipping(tmp_path):
    """The traced train step of ``train()`` on a tiny model: the weight change of every
    trainable tensor equals -lr * (its gradient clipped to norm 5 on its own), the gradient
    being that of the five losses plus matterport's weight decay (checked in NumPy).
    Under op determinism, as ``train()`` runs with a SEED: the eager and traced gradients then
    differ by summation order only."""
    from mrcnn.engine.runtime import op_determinism

    with op_determinism(True):
        _check_first_train_step(tmp_path)


def _check_first_train_step(tmp_path):
    config = train_config(SEED=4, LEARNING_MOMENTUM=0.9, LEARNING_RATE=0.05, ROI_INCLUDE_GT=False,
                          WEIGHT_DECAY=1e-2)
    model = MaskRCNN("training", config, str(tmp_path))
    net = model.keras_model
    ds = shapes(4, seed=21)
    pipe = InputPipeline(ds, config, ds.image_ids, seed=1)
    batch = first_batch(pipe)
    variables = list(net.trainable_variables)
    anchors = tf.constant(get_anchors(config, (64, 64), normalized=True))
    seed = tf.constant([4, 0], tf.int64)
    with tf.GradientTape() as tape:
        losses = compute_losses(net, batch, anchors, TargetSpec.from_config(config), config.MEAN_PIXEL,
                                training=True, seed=seed)
        total = total_loss(losses, config.LOSS_WEIGHTS, config.WEIGHT_DECAY, variables)
    grads = [g.numpy() for g in tape.gradient(total, variables)]
    decay = float(total) - sum(float(losses[k]) for k in LOSS_NAMES)
    np.testing.assert_allclose(decay, _decay_numpy(variables, 1e-2), rtol=1e-4)
    norms = [np.linalg.norm(g) for g in grads]
    assert max(norms) > 5.0 > min(norms)   # some tensors are clipped, some are not

    before = [v.numpy().copy() for v in variables]
    trainer = Trainer(model)
    trainer.build_steps(pipe.element_spec())
    trainer.optimizer.learning_rate.assign(0.05)
    out = trainer.train_step_fn(batch, seed)
    np.testing.assert_allclose(float(out["loss"]), float(total), rtol=1e-5)
    # Eager (tape) and traced gradients differ by float summation order (~1e-3 relative for
    # the deepest layers), so compare each tensor as a whole: direction and clipped norm. A bias
    # before a training-mode BatchNorm has a zero gradient up to rounding (hence the atol).
    for v, w, g in zip(variables, before, grads):
        step, want = v.numpy() - w, -0.05 * _clip_per_tensor(g, 5.0)
        scale = np.linalg.norm(want)
        assert np.linalg.norm(step - want) <= 1e-2 * scale + 1e-6, v.path
        assert np.linalg.norm(step) == pytest.approx(0.05 * min(np.linalg.norm(g), 5.0), rel=1e-2, abs=1e-6), v.path


_SEED_SCRIPT = """
import json, sys, tempfile
import keras, numpy as np
from mrcnn.model import MaskRCNN
from mrcnn.engine.train_graph import LOSS_NAMES
from tests.train_helpers import shapes, train_config

out = []
for seed, noise in ((7, 123), (7, 456), (8, 123)):
    keras.utils.set_random_seed(noise)   # global state left by earlier code must not matter
    config = train_config(SEED=seed, STEPS_PER_EPOCH=3, VALIDATION_STEPS=0, ROI_INCLUDE_GT=False)
    model = MaskRCNN("training", config, tempfile.mkdtemp())
    model.train(shapes(6, seed=21), None, 0.01, 1, "all")
    out.append([[s[k] for k in LOSS_NAMES + ("loss",)] for _, s in model._trainer.step_losses])
print(json.dumps(out))
"""


@pytest.mark.slow
def test_same_seed_gives_the_same_losses_and_another_seed_does_not():
    """Two fresh models and trainers with SEED=7 (weights, data order, ROI sampling) give the
    same five losses for the first 3 steps; SEED=8 gives different ones. In a child process,
    because SEED turns on TensorFlow's op determinism for the rest of the process."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root)
    proc = subprocess.run([sys.executable, "-c", _SEED_SCRIPT], capture_output=True, text=True,
                          cwd=root, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b, c = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(a) == 3
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[0], c[0], rtol=1e-3)
