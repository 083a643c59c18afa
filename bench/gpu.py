"""One-command GPU benchmark: ``python -m bench.gpu`` (``--smoke``: a tiny config on CPU in seconds).

Reports, for ResNet-50 FPN (``--backbone``), 81 classes, matterport's training defaults at
1024 x 1024:
- training images/s at batch 2 and 4 in float32, mixed float16 (loss scaling) and mixed float16
  with the whole step compiled by XLA (``XLA_COMPILE = True``: static-shape targets, gather
  ROIAlign, ``jit_compile``); ``--modes`` also takes float32_xla. The step runs on ``--cached`` batches made by the real input pipeline and
  reused in turn, so the figure is the model's, not the host's; the pipeline is measured apart.
- ``detect()`` latency per 1024 px image (float32, batch 1);
- peak GPU memory per setting (``tf.config.experimental.get_memory_info``; process peak RSS on CPU);
- the input pipeline's images/s on this host's cores (``bench.bench_pipeline_scaling.measure``).
A setting that would start after ``--budget`` seconds is skipped and says so (default 420 s:
the whole run stays under 8 minutes). NVIDIA's and Detectron2's published figures are printed
beside ours. Writes bench/results/gpu.json (bench/results/gpu_smoke.json with --smoke).
"""
import argparse
import gc
import os
import resource
import sys
import time

import numpy as np

from bench.env import env_info, loadavg

MODES = {"float32": (None, False), "mixed_float16": ("mixed_float16", False),
         "mixed_float16_xla": ("mixed_float16", True), "float32_xla": (None, True)}
# Published single-GPU training figures (images/s) for Mask R-CNN R50-FPN, for comparison.
REFERENCES = {"nvidia_tf2_a100_tf32_batch4": 18.4, "nvidia_tf2_a100_amp_batch4_xla": 28.6,
              "detectron2_v100_per_gpu": 7.7}


def make_config(args, batch, precision, mode="training"):
    from mrcnn.config import Config

    class GPUBenchConfig(Config):
        NAME = "bench_gpu"
        BACKBONE = args.backbone
        NUM_CLASSES = 81
        IMAGE_MIN_DIM = args.size
        IMAGE_MAX_DIM = args.size
        IMAGES_PER_GPU = batch
        SEED = 1

    if args.smoke:   # tests/helpers.TinyConfig's network: builds and steps in about a second on CPU
        for key, value in dict(BACKBONE="small", NUM_CLASSES=4, TOP_DOWN_PYRAMID_SIZE=32, RPN_CONV_CHANNELS=32,
                               FPN_CLASSIF_FC_LAYERS_SIZE=64, MASK_HEAD_CHANNELS=16,
                               RPN_ANCHOR_SCALES=(8, 16, 32, 64, 128), PRE_NMS_LIMIT=500,
                               POST_NMS_ROIS_TRAINING=64, POST_NMS_ROIS_INFERENCE=64, TRAIN_ROIS_PER_IMAGE=32,
                               MAX_GT_INSTANCES=10, DETECTION_MAX_INSTANCES=20).items():
            setattr(GPUBenchConfig, key, value)
    config = GPUBenchConfig()
    config.update({"MIXED_PRECISION": precision})
    return config


def peak_memory():
    """(peak GPU bytes or None, process peak RSS bytes)."""
    import tensorflow as tf

    gpu = None
    if tf.config.list_physical_devices("GPU"):
        gpu = int(tf.config.experimental.get_memory_info("GPU:0")["peak"])
    return gpu, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak():
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        tf.config.experimental.reset_memory_stats("GPU:0")


def train_setting(args, dataset, mode, batch):
    """images/s of the training step at ``batch`` in ``mode`` (a MODES key) on cached batches."""
    import keras
    import tensorflow as tf

    from mrcnn.data.data_pipeline import InputPipeline
    from mrcnn.model import MaskRCNN
    from mrcnn.engine.training import Trainer

    precision, xla = MODES[mode]
    keras.utils.set_random_seed(1)
    config = make_config(args, batch, precision)
    config.update({"XLA_COMPILE": xla})
    model = MaskRCNN("training", config, args.logs)
    model.set_trainable("all", verbose=0)
    trainer = Trainer(model)
    pipe = InputPipeline(dataset, config, dataset.image_ids, seed=1)
    cached = list(trainer.distribute(pipe, 0, args.cached))
    step = trainer.build_train_step(pipe)
    reset_peak()
    times, losses = [], []
    for i in range(args.warmup + args.steps):
        t = time.perf_counter()
        out = step(cached[i % len(cached)], tf.constant([1, i], tf.int64))
        losses.append(float(out["loss"]))   # float() waits for the step to finish
        times.append(time.perf_counter() - t)
    gpu_peak, rss_peak = peak_memory()
    med = float(np.median(times[args.warmup:]))
    result = {"mode": mode, "batch": batch, "seconds_per_step": med, "images_per_second": batch / med,
              "first_step_seconds_incl_trace": times[0], "step_times": times, "losses": losses,
              "losses_finite": bool(np.all(np.isfinite(losses))), "peak_gpu_bytes": gpu_peak,
              "peak_rss_bytes": rss_peak}
    del model, trainer, step, cached
    keras.backend.clear_session()
    gc.collect()
    return result


def inference_setting(args):
    """Median detect() seconds per ``args.size`` image (float32, batch 1)."""
    import keras

    from mrcnn.model import MaskRCNN

    keras.utils.set_random_seed(1)
    config = make_config(args, 1, None)
    config.update({"DETECTION_MIN_CONFIDENCE": 0.7})
    model = MaskRCNN("inference", config, args.logs)
    image = np.random.default_rng(1).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    reset_peak()
    t = time.perf_counter()
    model.detect([image])
    first = time.perf_counter() - t
    times = []
    for _ in range(args.warmup + args.repeats):
        t = time.perf_counter()
        model.detect([image])
        times.append(time.perf_counter() - t)
    gpu_peak, rss_peak = peak_memory()
    del model
    keras.backend.clear_session()
    gc.collect()
    return {"size": args.size, "median_seconds": float(np.median(times[args.warmup:])), "runs_seconds": times,
            "first_call_seconds_incl_trace": first, "peak_gpu_bytes": gpu_peak, "peak_rss_bytes": rss_peak}


def pipeline_setting(args):
    """The input pipeline alone on all of this host's cores (bench_pipeline_scaling's data)."""
    from bench import bench_pipeline_scaling as ps

    folder = args.data + ("_smoke" if args.smoke else "")
    ps.write_images(folder, 2 if args.smoke else 32)
    result = ps.measure(folder, args.size, False, args.pipeline_seconds, skip=1 if args.smoke else 2)
    result.update(size=args.size, cores=os.cpu_count())
    return result


def device_description():
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return {"gpu": None, "cpu_count": os.cpu_count()}
    details = tf.config.experimental.get_device_details(gpus[0])
    return {"gpu": details.get("device_name"), "compute_capability": details.get("compute_capability"),
            "gpu_count": len(gpus), "cpu_count": os.cpu_count()}


def training_dataset(args):
    if args.smoke:
        from mrcnn.data.shapes import ShapesDataset

        ds = ShapesDataset()
        ds.load_shapes(8, args.size, args.size, seed=1)
        ds.prepare()
        return ds
    from bench.bench_train import synthetic_dataset

    return synthetic_dataset(args.size, 16)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny config, 64 px, 1 step per setting (CPU, CI)")
    ap.add_argument("--backbone", default="resnet50")
    ap.add_argument("--size", type=int, default=None, help="image side (default 1024; 64 with --smoke)")
    ap.add_argument("--batches", default=None, help="comma list (default 2,4; 2 with --smoke)")
    ap.add_argument("--modes", default="float32,mixed_float16,mixed_float16_xla", help="comma list of " + ", ".join(MODES))
    ap.add_argument("--steps", type=int, default=None, help="timed steps per setting (default 10)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps/calls first (default 3)")
    ap.add_argument("--cached", type=int, default=None, help="distinct batches cycled (default 4)")
    ap.add_argument("--repeats", type=int, default=None, help="timed detect() calls (default 10)")
    ap.add_argument("--pipeline-seconds", type=float, default=None, help="default 15")
    ap.add_argument("--budget", type=float, default=420.0, help="no setting starts after this many seconds")
    ap.add_argument("--data", default=os.path.join("/tmp", "bench_pipeline_scaling_data"))
    ap.add_argument("--logs", default=os.path.join("/tmp", "bench_gpu_logs"))
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    smoke = {"size": 64, "batches": "2", "steps": 1, "warmup": 1, "cached": 1, "repeats": 1,
             "pipeline_seconds": 1.0, "out": os.path.join("bench", "results", "gpu_smoke.json")}
    full = {"size": 1024, "batches": "2,4", "steps": 10, "warmup": 3, "cached": 4, "repeats": 10,
            "pipeline_seconds": 15.0, "out": os.path.join("bench", "results", "gpu.json")}
    for key, value in (smoke if args.smoke else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)   # peak memory = what the model needs
    record = {"command": "python -m bench.gpu " + " ".join(argv if argv is not None else sys.argv[1:]),
              "device": device_description(), "env": env_info(), "backbone": "small" if args.smoke else args.backbone,
              "size": args.size, "train": [], "skipped": [], "references_images_per_second": REFERENCES}
    dataset = training_dataset(args)

    def run(name, fn, *fn_args):
        if time.perf_counter() - start > args.budget:
            record["skipped"].append(f"{name}: over the {args.budget:.0f} s budget")
            print(f"  {name}: skipped (budget)", flush=True)
            return None
        t = time.perf_counter()
        out = fn(*fn_args)
        print(f"  {name}: done in {time.perf_counter() - t:.1f} s", flush=True)
        return out

    for mode in args.modes.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            r = run(f"train {mode} batch {batch}", train_setting, args, dataset, mode, batch)
            if r:
                record["train"].append(r)
    record["inference"] = run("inference", inference_setting, args)
    record["pipeline"] = run("pipeline", pipeline_setting, args)
    record["total_seconds"] = time.perf_counter() - start
    record["env"]["loadavg_at_end"] = loadavg()
    report(record)
    from mrcnn.io.fsio import atomic_write_json

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    atomic_write_json(args.out, record)
    print(f"wrote {args.out}")
    return record


def report(record):
    gib = 2.0 ** 30
    print(f"\ndevice: {record['device']}, {record['backbone']} at {record['size']} px")
    print(f"{'mode':<20} {'batch':>5} {'s/step':>8} {'images/s':>9} {'peak GPU GiB':>13} {'finite':>7}")
    for r in record["train"]:
        mem = f"{r['peak_gpu_bytes'] / gib:.2f}" if r["peak_gpu_bytes"] is not None else "-"
        print(f"{r['mode']:<20} {r['batch']:>5} {r['seconds_per_step']:8.3f} {r['images_per_second']:9.2f} "
              f"{mem:>13} {str(r['losses_finite']):>7}")
    if record["inference"]:
        print(f"detect() latency: {record['inference']['median_seconds'] * 1000:.1f} ms per image")
    if record["pipeline"]:
        p = record["pipeline"]
        print(f"input pipeline alone: {p['images_per_second']:.2f} images/s on {p['cores']} cores "
              f"({p['cores_busy']:.1f} cores busy)")
    print("published (images/s): " + ", ".join(f"{k} {v}" for k, v in record["references_images_per_second"].items()))
    print(f"total {record['total_seconds']:.0f} s; skipped: {record['skipped'] or 'none'}")


if __name__ == "__main__":
    main()
