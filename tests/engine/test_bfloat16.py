"""MIXED_PRECISION="mixed_bfloat16" (CPUs with AVX-512 BF16 / AMX, TPUs): a tiny-config training
step runs with float32 weights, bfloat16 convolutions, no loss scaling and finite losses that
fall on a fixed batch; the global dtype policy is restored afterwards."""
import math

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from mrcnn.data.data_pipeline import InputPipeline  # noqa: E402
from mrcnn.model import MaskRCNN  # noqa: E402
from mrcnn.data.shapes import ShapesDataset  # noqa: E402
from mrcnn.engine.training import Trainer  # noqa: E402
from tests.helpers import tiny_config  # noqa: E402


def test_train_cli_flag_takes_bfloat16():
    import train

    parser = train.build_parser()
    assert parser.parse_args(["--mixed-precision"]).mixed_precision == "float16"
    assert parser.parse_args(["--mixed-precision", "bfloat16"]).mixed_precision == "bfloat16"
    assert parser.parse_args(["--mixed-precision", "off"]).mixed_precision == "off"
    assert parser.parse_args([]).mixed_precision == "auto"


def test_auto_precision_is_bfloat16_only_on_amx_cpus_with_onednn():
    from mrcnn.engine.runtime import auto_precision

    amx = {"avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}
    assert auto_precision(amx, [], {})[0] == "mixed_bfloat16"
    assert auto_precision(amx, [], {"TF_ENABLE_ONEDNN_OPTS": "1"})[0] == "mixed_bfloat16"
    assert auto_precision(amx, [], {"TF_ENABLE_ONEDNN_OPTS": "0"})[0] is None       # emulated
    assert auto_precision(amx, ["/physical_device:GPU:0"], {})[0] is None           # GPU host
    assert auto_precision({"avx512f", "avx512_bf16"}, [], {})[0] is None            # no AMX: untested
    assert auto_precision({"avx2", "fma"}, [], {})[0] is None


def test_train_precision_flag_against_the_config():
    from mrcnn.engine.runtime import auto_precision
    from mrcnn_keras3.training import resolve_precision

    def resolved(flag, preset=None, resumed=False):
        config = tiny_config(MIXED_PRECISION=preset)
        resolve_precision(config, flag, resumed)
        return config.MIXED_PRECISION

    assert resolved("off", "mixed_bfloat16") is None
    assert resolved("bfloat16") == "mixed_bfloat16" and resolved("float16") == "mixed_float16"
    assert resolved("auto", "mixed_float16") == "mixed_float16"   # the config's choice stands
    assert resolved("auto", None, resumed=True) is None            # a float32 run resumes in float32
    assert resolved("auto") == auto_precision()[0]                 # else this host's default


@pytest.mark.slow
def test_tiny_training_steps_in_mixed_bfloat16(tmp_path):
    keras.utils.set_random_seed(5)
    config = tiny_config(MIXED_PRECISION="mixed_bfloat16", IMAGE_MIN_DIM=64, IMAGE_MAX_DIM=64,
                         IMAGES_PER_GPU=2, TRAIN_BN=True, LEARNING_RATE=0.01)
    model = MaskRCNN("training", config, str(tmp_path))
    assert keras.config.dtype_policy().name == "float32"
    net = model.keras_model
    conv = net.get_layer("fpn_p3")
    assert conv.compute_dtype == "bfloat16" and conv.variable_dtype == "float32"
    assert all(v.dtype == "float32" for v in net.trainable_variables)
    model.set_trainable("all", verbose=0)
    trainer = Trainer(model)
    ds = ShapesDataset()
    ds.load_shapes(4, 64, 64, seed=3)
    ds.prepare()
    pipe = InputPipeline(ds, config, ds.image_ids, seed=1)
    step = trainer.build_train_step(pipe)
    assert not isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    batch = next(iter(trainer.distribute(pipe, 0, 1)))
    losses = [step(batch, tf.constant([1, i], tf.int64)) for i in range(6)]
    for out in losses:
        assert all(math.isfinite(float(v)) for v in out.values()), out
    totals = [float(out["loss"]) for out in losses]
    assert np.mean(totals[-2:]) < totals[0], totals   # fitting one batch: the loss falls
    assert all(v.dtype == "float32" for v in net.trainable_variables)


def test_evaluate_cli_flag_takes_a_precision():
    from mrcnn_keras3.evaluate_cli import parse_args

    assert parse_args(["--mixed-precision", "bfloat16"]).mixed_precision == "bfloat16"
    assert parse_args(["--mixed-precision", "off"]).mixed_precision == "off"
    assert parse_args([]).mixed_precision is None   # the run's own


def test_detect_in_mixed_bfloat16_matches_float32_features(tmp_path):
    """Inference with the run's float32 weights in bfloat16: the pyramid and RPN logits stay
    within bfloat16's rounding of float32's, and detect() returns matterport's dtypes."""
    from mrcnn.evaluation.eval_loop import copy_weights, inference_config

    base = tiny_config(IMAGE_MIN_DIM=64, IMAGE_MAX_DIM=64, DETECTION_MIN_CONFIDENCE=0.0)
    keras.utils.set_random_seed(2)
    f32 = MaskRCNN("inference", inference_config(base, None), str(tmp_path))
    bf16 = MaskRCNN("inference", inference_config(base, None, "bfloat16"), str(tmp_path))
    assert keras.config.dtype_policy().name == "float32"
    copy_weights(f32, bf16)
    assert bf16.keras_model.get_layer("fpn_p3").compute_dtype == "bfloat16"
    ds = ShapesDataset()
    ds.load_shapes(1, 64, 64, seed=4)
    ds.prepare()
    image = ds.load_image(0)
    molded = tf.constant(f32.mold_inputs([image])[0])
    (p32, logits32), (p16, logits16) = [
        (outs[0], outs[1]) for outs in (m.keras_model.features(molded) for m in (f32, bf16))]
    for a, b in list(zip(p32, p16)) + [(logits32, logits16)]:
        a, b = np.asarray(a, np.float32), np.asarray(tf.cast(b, tf.float32))
        scale = np.abs(a).max()
        assert scale > 0
        assert np.abs(a - b).max() <= 0.05 * scale, (np.abs(a - b).max(), scale)
        assert np.abs(a - b).max() > 0   # really computed in bfloat16
    r = bf16.detect([image])[0]
    assert r["rois"].dtype == np.int32 and r["class_ids"].dtype == np.int32
    assert r["scores"].dtype == np.float32 and r["masks"].dtype == bool
    assert r["masks"].shape[:2] == image.shape[:2] and len(r["rois"]) == r["masks"].shape[-1] > 0
    assert np.all(np.isfinite(r["scores"])) and np.all((r["scores"] >= 0) & (r["scores"] <= 1))
