"""Input-pipeline overhead: training step time fed by the real tf.data pipeline over step time
on one cached in-memory batch (same model, config and traced step function).

Data: ``ShapesDataset`` images generated at the model's size (drawing, resizing, mini-masks
and RPN targets run in the pipeline's parallel ``tf.numpy_function`` map, as for any
``mrcnn.utils.Dataset``). The two feeds alternate in rounds so that load changes on a
shared machine hit both; the first steps of every pipeline round (empty prefetch buffer) are
dropped, as they would be amortised in a real epoch. Target: ratio <= 1.05.

    .venv/bin/python -m bench.bench_pipeline [--setting small256,r50_512] [--rounds 5] [--steps 12]

Prints a table and writes bench/results/pipeline.json.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

from bench.env import env_info

SETTINGS = {  # name: (backbone, image size, images per batch, FPN channels)
    "small128": ("small", 128, 4, 64),   # bench_learning's model
    "small256": ("small", 256, 2, 64),
    "r50_512": ("resnet50", 512, 1, 256),
}


def make_config(backbone, size, batch, fpn):
    from mrcnn.config import Config

    class PipeConfig(Config):
        NAME = "bench_pipeline"
        BACKBONE = backbone
        NUM_CLASSES = 4
        IMAGE_MIN_DIM = size
        IMAGE_MAX_DIM = size
        IMAGES_PER_GPU = batch
        TOP_DOWN_PYRAMID_SIZE = fpn
        RPN_CONV_CHANNELS = 2 * fpn
        FPN_CLASSIF_FC_LAYERS_SIZE = 4 * fpn
        MASK_HEAD_CHANNELS = fpn
        RPN_ANCHOR_SCALES = tuple(size // 32 * 2 ** i for i in range(5))
        TRAIN_BN = True
        SEED = 1

    return PipeConfig()


def build_setting(name, overrides=None, images=500, log_dir="/tmp/bench_pipeline_logs"):
    """(trainer, pipe) of one SETTINGS entry: a seeded model with all layers trainable and its
    step functions built, fed by ``images`` shapes (``overrides``: config values to change)."""
    import keras

    from mrcnn.data.data_pipeline import InputPipeline
    from mrcnn.data.shapes import ShapesDataset
    from mrcnn.model import MaskRCNN

    backbone, size, batch, fpn = SETTINGS[name]
    config = make_config(backbone, size, batch, fpn)
    config.update(overrides or {})
    keras.utils.set_random_seed(1)
    model = MaskRCNN("training", config, log_dir)
    model.set_trainable("all", verbose=0)
    dataset = ShapesDataset()
    dataset.load_shapes(images, size, size, seed=1, max_instances=6)
    dataset.prepare()
    pipe = InputPipeline(dataset, config, dataset.image_ids, seed=1)
    model.trainer.build_steps(pipe.element_spec())
    return model.trainer, pipe


def run_setting(name, rounds, steps, skip):
    import tensorflow as tf

    backbone, size, batch, fpn = SETTINGS[name]
    trainer, pipe = build_setting(name)
    step = trainer.train_step_fn
    cached = next(iter(trainer.distribute(pipe, 0, 1)))
    t0 = time.perf_counter()
    float(step(cached, tf.constant([1, 0], tf.int64))["loss"])
    trace = time.perf_counter() - t0
    times = {"cached": [], "pipeline": []}
    k = 1
    for r in range(rounds):
        for _ in range(steps):
            t = time.perf_counter()
            float(step(cached, tf.constant([1, k], tf.int64))["loss"])
            times["cached"].append(time.perf_counter() - t)
            k += 1
        t = time.perf_counter()
        for i, b in enumerate(trainer.distribute(pipe, r + 1, steps + skip)):
            float(step(b, tf.constant([1, k], tf.int64))["loss"])
            now = time.perf_counter()
            if i >= skip:   # time between consecutive steps, waiting for data included
                times["pipeline"].append(now - t)
            t = now
            k += 1
        print(f"  {name} round {r + 1}: cached {np.median(times['cached'][-steps:]):.3f} s, "
              f"pipeline {np.median(times['pipeline'][-steps:]):.3f} s", flush=True)
    med = {k: float(np.median(v)) for k, v in times.items()}
    # Python-side loading cost of one sample, single thread (what the map's threads share).
    t = time.perf_counter()
    for i in range(10):
        pipe.load_sample(i, 0, i)
    per_sample = (time.perf_counter() - t) / 10
    return {"backbone": backbone, "size": size, "batch": batch, "fpn_channels": fpn,
            "trace_and_first_step_seconds": trace, "median_step_cached": med["cached"],
            "median_step_pipeline": med["pipeline"], "ratio": med["pipeline"] / med["cached"],
            "sample_load_seconds_one_thread": per_sample, "steps_per_feed": len(times["cached"]),
            "times": times}


def main(argv=None):
    from mrcnn.io.fsio import atomic_open

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--setting", default="small256", help="comma list of " + ", ".join(SETTINGS))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=12, help="timed steps per feed and round")
    ap.add_argument("--skip", type=int, default=2, help="pipeline steps dropped at each round's start")
    ap.add_argument("--out", default=os.path.join("bench", "results", "pipeline.json"))
    args = ap.parse_args(argv)
    results = {}
    for name in args.setting.split(","):
        results[name] = run_setting(name, args.rounds, args.steps, args.skip)
    print(f"\n{'setting':<10} {'cached s/step':>14} {'pipeline s/step':>16} {'ratio':>7} "
          f"{'load s/sample':>14}  (target ratio <= 1.05)")
    for name, r in results.items():
        print(f"{name:<10} {r['median_step_cached']:14.3f} {r['median_step_pipeline']:16.3f} "
              f"{r['ratio']:7.3f} {r['sample_load_seconds_one_thread']:14.4f}")
    record = {"command": "python -m bench.bench_pipeline " + " ".join(argv if argv is not None else sys.argv[1:]),
              "results": results, "env": env_info()}
    with atomic_open(args.out, "w") as f:
        json.dump(record, f, indent=2)
    print(f"wrote {args.out}")
    return record


if __name__ == "__main__":
    main()
