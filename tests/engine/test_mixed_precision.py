"""MIXED_PRECISION="mixed_float16" on CPU: training with loss scaling gives finite, decreasing
losses; convolutions keep float32 variables and compute in float16 while the graph layers
(proposals, ROIAlign, detection) stay float32; detect() keeps its documented schema; and a
float32 model built afterwards is float32 (the global dtype policy is restored)."""
from __future__ import annotations

import math

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from mrcnn.model import MaskRCNN  # noqa: E402
from mrcnn.data.shapes import ShapesDataset  # noqa: E402
from tests.engine.dist_worker import make_config  # noqa: E402

MP = "mixed_float16"
EPOCHS = 5
STEPS = 4


def mp_config(mode="training", **overrides):
    # From scratch BatchNorm has to learn its statistics (see tests/train_helpers.py). None, not
    # True: True would also normalise detect()'s ROIs with their own batch statistics (matterport),
    # which after 20 steps leaves this tiny model with no foreground detection to check.
    values = dict(MIXED_PRECISION=MP, TRAIN_BN=None, NAME="mixed", LEARNING_RATE=0.01)
    if mode == "inference":
        values.update(DETECTION_MIN_CONFIDENCE=0.0, POST_NMS_ROIS_INFERENCE=100)
    values.update(overrides)
    return make_config(images_per_gpu=2, gpu_count=1, steps=STEPS, **values)


def shapes(count, seed):
    ds = ShapesDataset()
    ds.load_shapes(count, 64, 64, seed=seed)
    ds.prepare()
    return ds


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A mixed-precision model trained for 5 epochs of 4 steps on 4 images (one train() call, so one
    trace: after it a step takes ~0.2 s), validated on 2 other images."""
    keras.utils.set_random_seed(11)
    assert keras.config.dtype_policy().name == "float32"
    model = MaskRCNN("training", mp_config(), str(tmp_path_factory.mktemp("mp_logs")))
    history = model.train(shapes(4, seed=21), shapes(2, seed=22), 0.01, EPOCHS, "all")
    return model, history


def test_losses_are_finite_and_decrease(trained):
    model, history = trained
    assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))
    names = ("loss", "rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss", "mrcnn_mask_loss")
    for h in history:
        for k in names + tuple(f"val_{n}" for n in names):
            assert math.isfinite(h[k]), (h["epoch"], k, h[k])
    # Fitting 4 images: the total falls steadily (7.3 -> 4.5 here), well past epoch-to-epoch noise.
    totals = [h["loss"] for h in history]
    assert totals[-1] < 0.8 * totals[0], totals
    assert np.mean(totals[-2:]) < np.mean(totals[:2]), totals


def test_training_used_dynamic_loss_scaling(trained):
    model, _ = trained
    opt = model._trainer.optimizer
    assert isinstance(opt, keras.optimizers.LossScaleOptimizer)
    scale = float(opt.dynamic_scale.numpy())
    # Finite and still large: float16 gradients did not overflow at every step.
    assert math.isfinite(scale) and scale >= 2.0 ** 8, scale
    # The wrapped optimiser counts applied updates only: steps whose scaled gradients overflowed
    # are skipped (the scale halves), so most but possibly not all of the steps count.
    applied = int(opt.inner_optimizer.iterations.numpy())
    assert EPOCHS * STEPS // 2 <= applied <= EPOCHS * STEPS, applied


def test_conv_layers_compute_in_float16_with_float32_variables(trained):
    model, _ = trained
    net = model.keras_model
    for name in ("conv1", "res4a_branch2b", "fpn_p3", "rpn_conv_shared", "mrcnn_class_conv1", "mrcnn_mask_conv1"):
        layer = net.get_layer(name)
        assert layer.dtype_policy.name == MP, name
        assert layer.compute_dtype == "float16" and layer.variable_dtype == "float32", name
        assert all(w.dtype == "float32" for w in layer.weights), name
    # A forward pass really runs in float16 inside the feature model ...
    image = tf.zeros([1, 64, 64, 3])
    outs = net.feature_model(image)  # P2..P6, rpn logits, rpn probs, rpn deltas
    assert [o.dtype for o in outs] == [tf.float16] * 6 + [tf.float32, tf.float16]  # softmax kept float32
    # ... while the graph layers stay float32 and the network hands them float32 tensors.
    for layer in (net.proposals, net.roi_align_box, net.roi_align_mask, net.detection):
        assert layer.dtype_policy.name == "float32", layer.name
    pyramid, logits, probs, deltas = net.features(image)
    assert {t.dtype for t in pyramid + [logits, probs, deltas]} == {tf.float32}


def test_detect_with_the_policy_returns_the_documented_schema(trained, tmp_path):
    model, history = trained
    infer = MaskRCNN("inference", mp_config("inference"), str(tmp_path))
    assert infer.keras_model.get_layer("conv1").compute_dtype == "float16"
    infer.load_weights(history[-1]["checkpoint"])
    # The checkpoint holds the float32 master weights, identical to the training model's.
    np.testing.assert_array_equal(infer.keras_model.get_layer("mrcnn_mask").kernel.numpy(),
                                  model.keras_model.get_layer("mrcnn_mask").kernel.numpy())
    # This test is about the policy's output schema, not about what 20 steps learned: bias the
    # classifier towards class 1 so that the shapes image surely yields detections to check.
    logits = infer.keras_model.get_layer("mrcnn_class_logits")
    kernel, bias = logits.get_weights()
    bias[1] += 20.0
    logits.set_weights([kernel, bias])
    images = [shapes(1, seed=23).load_image(0), np.full((48, 80, 3), 90, np.uint8)]
    results = infer.detect(images)
    assert len(results) == 2
    for image, r in zip(images, results):
        assert set(r) == {"rois", "class_ids", "scores", "masks"}
        n = len(r["class_ids"])
        assert r["rois"].dtype == np.int32 and r["rois"].shape == (n, 4)
        assert r["class_ids"].dtype == np.int32
        assert r["scores"].dtype == np.float32 and r["scores"].shape == (n,)
        # matterport's dtypes: bool masks, float64 [H, W, 0] when nothing is detected
        assert r["masks"].dtype == (bool if n else np.float64) and r["masks"].shape == image.shape[:2] + (n,)
        assert np.all(np.isfinite(r["scores"])) and np.all((r["scores"] >= 0) & (r["scores"] <= 1))
        if n:
            assert np.all((r["class_ids"] >= 1) & (r["class_ids"] < 4))
            y1, x1, y2, x2 = r["rois"].T
            assert np.all((0 <= y1) & (y1 < y2) & (y2 <= image.shape[0]))
            assert np.all((0 <= x1) & (x1 < x2) & (x2 <= image.shape[1]))
    # DETECTION_MIN_CONFIDENCE=0: the shapes image yields detections, so the check above ran.
    assert len(results[0]["class_ids"]) > 0


def test_float32_model_after_a_mixed_one_is_float32(trained, tmp_path):
    assert keras.config.dtype_policy().name == "float32"
    model = MaskRCNN("inference", make_config(images_per_gpu=1, gpu_count=1, NAME="plain"), str(tmp_path))
    conv = model.keras_model.get_layer("conv1")
    assert conv.dtype_policy.name == "float32" and conv.compute_dtype == "float32"
    assert all(o.dtype == tf.float32 for o in model.keras_model.feature_model(tf.zeros([1, 64, 64, 3])))
