"""One training process of the distributed-training tests (``tests/engine/test_distributed.py``).

    python tests/engine/dist_worker.py init --weights W.h5 [--out INIT.npz]
    python tests/engine/dist_worker.py train --strategy multiworker|mirrored|single --weights W.h5 \
        --model-dir DIR --out OUT.npz [--steps 3] [--mixed-precision] [--no-validation]
    python tests/engine/dist_worker.py overflow --bad 1 0 -1 [--agree]

``init`` builds the tiny training model and saves its random weights, so every run starts
equal. ``train`` creates its strategy before any other TensorFlow op (MultiWorkerMirroredStrategy
reads TF_CONFIG; "mirrored" splits the CPU into two logical devices first), builds the model
under ``strategy.scope()``, loads ``--weights``, trains one epoch of ``--steps`` steps at a
global batch of 2 (IMAGES_PER_GPU=1, GPU_COUNT=2) plus one validation step, and writes every
weight, in build order, to ``--out`` as ``w0000``, ``w0001``, ... with ``names`` and the
epoch's mean losses as ``losses`` (``LOSS_KEYS`` order; NaN where not computed). The last
stdout line, ``RESULT {json}``, holds the history, whether the process was chief, the
ROI-sampling seed each of its replicas derives and its CPU seconds. ``overflow`` runs a
LossScaleOptimizer on two mirrored replicas where one replica's gradients overflow.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 3
LOSS_KEYS = ("loss", "rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss", "mrcnn_mask_loss")
LOSS_KEYS = LOSS_KEYS + tuple(f"val_{k}" for k in LOSS_KEYS)


def make_strategy(name):
    """The strategy for ``name``; called before any other TensorFlow op."""
    import tensorflow as tf

    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    if name == "single":
        return tf.distribute.get_strategy()
    raise ValueError(f"unknown strategy {name!r}")


def make_config(images_per_gpu=1, gpu_count=2, steps=3, **overrides):
    """The tiny 64 px training config. TRAIN_BN=False: BatchNorm statistics do not depend on
    how the global batch is split across replicas, so the runs can be compared exactly."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
    from mrcnn.config import Config

    values = dict(
        NAME="dist", BACKBONE="small", IMAGE_MIN_DIM=64, IMAGE_MAX_DIM=64, NUM_CLASSES=4,
        TOP_DOWN_PYRAMID_SIZE=32, RPN_CONV_CHANNELS=32, FPN_CLASSIF_FC_LAYERS_SIZE=64, MASK_HEAD_CHANNELS=16,
        RPN_ANCHOR_SCALES=(8, 16, 32, 64, 128), IMAGES_PER_GPU=images_per_gpu, GPU_COUNT=gpu_count,
        STEPS_PER_EPOCH=steps, VALIDATION_STEPS=1, POST_NMS_ROIS_TRAINING=200, TRAIN_ROIS_PER_IMAGE=32,
        MAX_GT_INSTANCES=8, MINI_MASK_SHAPE=(28, 28), LEARNING_RATE=0.01, SEED=SEED, PRE_NMS_LIMIT=1000,
        RPN_TRAIN_ANCHORS_PER_IMAGE=64, TRAIN_BN=False, WARMUP_STEPS=0,
    )
    values.update(overrides)
    return type("DistTestConfig", (Config,), values)()


def make_dataset(count=12, seed=5):
    from mrcnn.data.shapes import ShapesDataset

    ds = ShapesDataset()
    ds.load_shapes(count, 64, 64, seed=seed)
    ds.prepare()
    return ds


def replica_seeds(strategy, seed):
    """{global replica id: the ROI-sampling seed it derives from ``seed``} for this process's replicas."""
    import tensorflow as tf
    from mrcnn.engine.steps import replica_seed

    def fn(s):
        ctx = tf.distribute.get_replica_context()
        return tf.cast(ctx.replica_id_in_sync_group, tf.int64), replica_seed(s)

    ids, seeds = strategy.run(tf.function(fn), args=(tf.constant(seed, tf.int64),))
    ids, seeds = strategy.experimental_local_results(ids), strategy.experimental_local_results(seeds)
    return {int(i): [int(v) for v in s.numpy()] for i, s in zip(ids, seeds)}


def dump_weights(model, path, losses=None):
    """All weights of ``model.keras_model`` in build order -> ``path`` (.npz), written atomically."""
    import numpy as np

    arrays = {f"w{i:04d}": np.asarray(v.numpy()) for i, v in enumerate(model.keras_model.weights)}
    arrays["names"] = np.array([v.path for v in model.keras_model.weights])
    arrays["losses"] = np.array([losses.get(k, np.nan) for k in LOSS_KEYS] if losses else [], np.float64)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def cmd_init(args):
    import keras

    keras.utils.set_random_seed(SEED)
    from mrcnn.model import MaskRCNN

    model = MaskRCNN("training", make_config(), args.model_dir or os.path.dirname(os.path.abspath(args.weights)))
    model.save_weights(args.weights)
    if args.out:
        dump_weights(model, args.out)
    return 0


def cmd_train(args):
    strategy = make_strategy(args.strategy)  # first: MWMS must start before other TF ops
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    # Grappler's arithmetic optimizer rewrites the one-process and the multi-worker graphs
    # differently (it regroups float sums in the convolution gradients), so the same math would be
    # rounded differently, and by the third step an ROI crossing the IoU threshold turns that into
    # a few % of the update. Off in every run, the layouts are compared on the same arithmetic.
    tf.config.optimizer.set_experimental_options({"arithmetic_optimization": False})
    from mrcnn.model import MaskRCNN

    gpu_count = strategy.num_replicas_in_sync
    # Mixed precision is checked for finite training, not equality: BatchNorm may learn (from scratch
    # the first steps overflow in float16 until the loss scale has dropped).
    extra = {"MIXED_PRECISION": "mixed_float16", "TRAIN_BN": True} if args.mixed_precision else {}
    config = make_config(images_per_gpu=2 // gpu_count, gpu_count=gpu_count, steps=args.steps, **extra)
    with strategy.scope():
        model = MaskRCNN("training", config, args.model_dir)
    model.load_weights(args.weights)
    val = None if args.no_validation else make_dataset(2, seed=6)
    history = model.train(make_dataset(), val, config.LEARNING_RATE, 1, args.layers)
    dump_weights(model, args.out, history[-1])
    info = {"replicas": gpu_count, "chief": model._trainer.chief, "log_dir": model.log_dir,
            "history": history, "replica_seeds": replica_seeds(strategy, [SEED, 7])}
    opt = model._trainer.optimizer
    if isinstance(opt, keras.optimizers.LossScaleOptimizer):
        info.update(loss_scale=float(opt.dynamic_scale.numpy()), applied=int(opt.inner_optimizer.iterations.numpy()))
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    info["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 1)
    print("RESULT " + json.dumps(info), flush=True)
    return 0


def cmd_overflow(args):
    """LossScaleOptimizer under MirroredStrategy (2 logical CPUs) when one replica's gradients
    overflow: prints RESULT with the weights, loss scale and applied-step count after each step."""
    strategy = make_strategy("mirrored")
    import keras
    import numpy as np
    import tensorflow as tf
    from mrcnn.engine.steps import agree_on_overflow

    with strategy.scope():
        w = keras.Variable(np.ones(3, np.float32), name="w")
        opt = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.5), initial_scale=4.0)
        opt.build([w])

    @tf.function
    def step(bad_replica):
        def fn():
            ctx = tf.distribute.get_replica_context()
            overflow = tf.equal(ctx.replica_id_in_sync_group, bad_replica)
            # The scaled gradient of each replica: 4 (= scale x 1), or inf on the bad replica.
            grads = [tf.fill([3], tf.where(overflow, tf.constant(np.inf), tf.constant(4.0)))]
            if args.agree:
                grads = agree_on_overflow(grads)
            opt.apply_gradients(zip(grads, [w]))
        strategy.run(fn)

    out = []
    for bad in args.bad:
        step(tf.constant(bad))
        out.append({"bad": bad, "w": [float(x) for x in w.numpy()], "scale": float(opt.dynamic_scale.numpy()),
                    "applied": int(opt.inner_optimizer.iterations.numpy())})
    print("RESULT " + json.dumps(out), flush=True)
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("init")
    i.add_argument("--weights", required=True)
    i.add_argument("--model-dir", default=None)
    i.add_argument("--out", default=None, help="also dump the initial weights (.npz)")
    t = sub.add_parser("train")
    t.add_argument("--strategy", required=True, choices=["multiworker", "mirrored", "single"])
    t.add_argument("--weights", required=True)
    t.add_argument("--model-dir", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--steps", type=int, default=3)
    t.add_argument("--layers", default="all")
    t.add_argument("--mixed-precision", action="store_true", help="MIXED_PRECISION='mixed_float16'")
    t.add_argument("--no-validation", action="store_true")
    o = sub.add_parser("overflow")
    o.add_argument("--bad", type=int, nargs="+", required=True, help="per step: the replica that overflows (-1: none)")
    o.add_argument("--agree", action="store_true", help="pass the gradients through training.agree_on_overflow")
    args = p.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
    return {"init": cmd_init, "train": cmd_train, "overflow": cmd_overflow}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
