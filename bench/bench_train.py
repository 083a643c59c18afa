"""Training throughput and peak memory: MaskRCNN.train()'s step (tf.data pipeline + traced
train step) on a synthetic dataset at S x S, 81 classes (COCO's head size), all layers trained.

Config: matterport defaults (TRAIN_ROIS_PER_IMAGE 200, POST_NMS_ROIS_TRAINING 2000,
PRE_NMS_LIMIT 6000, MAX_GT_INSTANCES 100, mini-masks 56x56, TRAIN_BN False) with
IMAGE_MIN_DIM = IMAGE_MAX_DIM = S. Images: noise with 3..8 filled ellipses/rectangles of random
classes. A step's time is the wall time between consecutive step completions (waiting for data
included), median over ``--steps`` steps after ``--warmup`` (the first includes tracing). Peak
memory is the process's ru_maxrss (VmHWM), which includes TensorFlow itself.

With --torchvision (if ``import torchvision`` works under this interpreter or
``--torchvision-python``; torch is never a dependency) torchvision's
maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, min_size=S, max_size=S) is trained on
the same images in a child process (its own peak RSS), same thread count.

    .venv/bin/python -m bench.bench_train [--size 512] [--batch 1] [--backbone resnet50]
                                         [--steps 7] [--warmup 2] [--torchvision]
                                         [--conv-grad fast|tf] [--rpn-channels 512]
                                         [--torchvision-python /path/to/venv/bin/python]

Prints a table and writes bench/results/train.json (results of other sizes/backbones/batches
already in the file are kept, keyed by setting).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

from bench.env import DEFAULT_PACKAGES, env_info

# From the issue: torchvision maskrcnn_resnet50_fpn training on these 2 cores at 512 px, batch 1.
TORCHVISION_REFERENCE = {"seconds_per_step": (7.4, 8.8), "peak_rss_gb": 4.1}
NUM_CLASSES = 81


def synthetic_dataset(size, count, seed=0):
    """A ``mrcnn.utils.Dataset`` of ``count`` noise images with 3..8 filled shapes each."""
    from mrcnn.utils import Dataset

    class Synthetic(Dataset):
        def load_image(self, image_id):
            return self._draw(image_id)[0]

        def load_mask(self, image_id):
            _, masks, class_ids = self._draw(image_id)
            return masks, class_ids

        def _draw(self, image_id):
            rng = np.random.default_rng([seed, image_id])
            image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            n = int(rng.integers(3, 9))
            masks = np.zeros((size, size, n), bool)
            yy, xx = np.ogrid[:size, :size]
            for k in range(n):
                h, w = rng.integers(size // 16, size // 3, 2)
                y, x = rng.integers(0, size - h), rng.integers(0, size - w)
                if k % 2:
                    masks[y:y + h, x:x + w, k] = True
                else:
                    masks[..., k] = ((yy - y - h / 2) / (h / 2)) ** 2 + ((xx - x - w / 2) / (w / 2)) ** 2 <= 1
                image[masks[..., k]] = rng.integers(0, 256, 3, dtype=np.uint8)
            for k in range(n - 1):   # later shapes occlude earlier ones
                masks[..., k] &= ~masks[..., k + 1:].any(-1)
            keep = masks.reshape(-1, n).any(0)
            return image, masks[..., keep], rng.integers(1, NUM_CLASSES, n).astype(np.int32)[keep]

    ds = Synthetic()
    for c in range(1, NUM_CLASSES):
        ds.add_class("synthetic", c, f"class{c}")
    for i in range(count):
        ds.add_image("synthetic", i, None, height=size, width=size)
    ds.prepare()
    return ds


def make_config(size, batch, backbone, rpn_channels=512, precision=None):
    from mrcnn.config import Config

    class TrainBenchConfig(Config):
        NAME = "bench_train"
        BACKBONE = backbone
        NUM_CLASSES = 81
        IMAGE_MIN_DIM = size
        IMAGE_MAX_DIM = size
        IMAGES_PER_GPU = batch
        RPN_CONV_CHANNELS = rpn_channels
        SEED = 1
        MIXED_PRECISION = precision

    return TrainBenchConfig()


def vm_hwm_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


def run_ours(size, batch, backbone, steps, warmup, rpn_channels=512, conv_grad="fast", precision=None):
    import keras
    import tensorflow as tf

    if conv_grad == "tf":
        # Before/after figure for mrcnn.modeling.conv: every FastGradConv2D takes Conv2D's own gradient.
        import mrcnn.modeling.conv
        mrcnn.modeling.conv.fast_grad_conv2d = lambda *args, **kwargs: None

    from mrcnn.data.data_pipeline import InputPipeline
    from mrcnn.model import MaskRCNN
    from mrcnn.engine.training import Trainer

    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    config = make_config(size, batch, backbone, rpn_channels, precision)
    keras.utils.set_random_seed(1)
    model = MaskRCNN("training", config, "/tmp/bench_train_logs")
    model.set_trainable("all", verbose=0)
    trainer = Trainer(model)
    dataset = synthetic_dataset(size, 64)
    pipe = InputPipeline(dataset, config, dataset.image_ids, seed=1)
    trainer.build_steps(pipe.element_spec())
    times, losses = [], []
    t = time.perf_counter()
    for i, b in enumerate(trainer.distribute(pipe, 0, warmup + steps)):
        out = trainer.train_step_fn(b, tf.constant([1, i], tf.int64))
        losses.append(float(out["loss"]))
        now = time.perf_counter()
        times.append(now - t)
        t = now
        print(f"  ours step {i + 1}: {times[-1]:.2f} s, loss {losses[-1]:.3f}", flush=True)
    timed = times[warmup:]
    med = float(np.median(timed))
    return {"seconds_per_step": med, "images_per_second": batch / med, "step_times": times,
            "first_step_seconds_incl_trace": times[0], "losses": losses,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
            "vm_hwm_gb": (vm_hwm_kb() or 0) / 2 ** 20, "rss_before_model_gb": rss_start / 2 ** 20}


def breakdown(size, batch, backbone, repeats=3):
    """Median seconds of parts of one training step on one cached batch (profiling aid):
    the feature network alone, the whole forward, the whole forward + backward, and the box
    head's first layer (a 7x7 'valid' Conv2D on 7x7 ROIs) fwd+bwd as Conv2D vs as the equal matmul."""
    import keras
    import tensorflow as tf

    from mrcnn.structures.anchors import get_anchors
    from mrcnn.data.data_pipeline import InputPipeline
    from mrcnn.model import MaskRCNN
    from mrcnn.engine.train_graph import TargetSpec, compute_losses, total_loss

    config = make_config(size, batch, backbone)
    keras.utils.set_random_seed(1)
    net = MaskRCNN("training", config, "/tmp/bench_train_logs").keras_model
    dataset = synthetic_dataset(size, 8)
    b = next(iter(InputPipeline(dataset, config, dataset.image_ids, seed=1).stream(0, 1)))
    anchors = tf.constant(get_anchors(config, (size, size), normalized=True))
    seed = tf.constant([1, 0], tf.int64)
    targets = TargetSpec.from_config(config)
    images = tf.cast(b["image"], tf.float32) - tf.constant(config.MEAN_PIXEL, tf.float32)
    variables, feature_vars = net.trainable_variables, net.feature_model.trainable_variables
    rois = config.TRAIN_ROIS_PER_IMAGE * batch
    pooled = tf.random.normal([rois, config.POOL_SIZE, config.POOL_SIZE, config.TOP_DOWN_PYRAMID_SIZE])
    kernel = net.get_layer("mrcnn_class_conv1").kernel

    def step(f):
        return tf.function(f, autograph=False)

    def features_fwd():
        return net.features(images, training=True)[1]

    def features_fwd_bwd():
        with tf.GradientTape() as tape:
            p, logits, _, deltas = net.features(images, training=True)
            s = tf.add_n([tf.reduce_sum(x) for x in p]) + tf.reduce_sum(logits) + tf.reduce_sum(deltas)
        return tape.gradient(s, feature_vars)[0]

    def losses_fwd():
        return compute_losses(net, b, anchors, targets, config.MEAN_PIXEL, True, seed)["mrcnn_mask_loss"]

    def all_fwd_bwd():
        with tf.GradientTape() as tape:
            losses = compute_losses(net, b, anchors, targets, config.MEAN_PIXEL, True, seed)
            total = total_loss(losses, config.LOSS_WEIGHTS, config.WEIGHT_DECAY, variables)
        return tape.gradient(total, variables)[0]

    def conv1_as_conv():
        with tf.GradientTape() as tape:
            s = tf.reduce_sum(tf.square(tf.nn.conv2d(pooled, kernel, 1, "VALID")))
        return tape.gradient(s, kernel)

    def conv1_as_matmul():
        with tf.GradientTape() as tape:
            flat = tf.reshape(pooled, [rois, -1])
            s = tf.reduce_sum(tf.square(flat @ tf.reshape(kernel, [flat.shape[1], -1])))
        return tape.gradient(s, kernel)

    out = {}
    for name, f in [("features fwd", features_fwd), ("features fwd+bwd", features_fwd_bwd),
                    ("all losses fwd", losses_fwd), ("all losses fwd+bwd", all_fwd_bwd),
                    (f"mrcnn_class_conv1 fwd+bwd as Conv2D ({rois} ROIs)", conv1_as_conv),
                    (f"mrcnn_class_conv1 fwd+bwd as matmul ({rois} ROIs)", conv1_as_matmul)]:
        f = step(f)
        np.asarray(f())
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            np.asarray(f())
            times.append(time.perf_counter() - t)
        out[name] = float(np.median(times))
        print(f"  {name:<52} {out[name]:7.2f} s", flush=True)
    return out


TORCH_CHILD = r"""
import json, resource, sys, time
import numpy as np, torch, torchvision
sys.path.insert(0, sys.argv[5])
from bench.bench_train import synthetic_dataset, vm_hwm_kb as hwm_kb
# VmHWM, not ru_maxrss: Linux carries the parent's peak RSS at fork() into the child's
# ru_maxrss across exec, so ru_maxrss would report at least this benchmark's own peak.
size, batch, steps, warmup = (int(v) for v in sys.argv[1:5])
# "bfloat16": the forward pass under torch.autocast (torch's CPU mixed precision); backward as usual.
import contextlib
autocast = torch.autocast("cpu", dtype=torch.bfloat16) if sys.argv[6] == "bfloat16" else contextlib.nullcontext()
torch.manual_seed(1)
model = torchvision.models.detection.maskrcnn_resnet50_fpn(
    weights=None, weights_backbone=None, num_classes=91, min_size=size, max_size=size)
model.train()
opt = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9, weight_decay=1e-4)
ds = synthetic_dataset(size, 64)
times = []
t = time.perf_counter()
for i in range(warmup + steps):
    images, targets = [], []
    for j in range(batch):
        k = (i * batch + j) % 64
        image = ds.load_image(k)
        masks, class_ids = ds.load_mask(k)
        ys, xs = np.where(masks.any(-1)) if masks.size else ([], [])
        boxes = []
        for m in np.moveaxis(masks, -1, 0):
            r, c = np.where(m)
            boxes.append([c.min(), r.min(), c.max() + 1, r.max() + 1])
        images.append(torch.from_numpy(image).permute(2, 0, 1).float() / 255)
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32),
                        "labels": torch.from_numpy(class_ids.astype(np.int64)),
                        "masks": torch.from_numpy(np.moveaxis(masks, -1, 0).astype(np.uint8))})
    with autocast:
        loss = sum(model(images, targets).values())
    opt.zero_grad()
    loss.backward()
    opt.step()
    now = time.perf_counter()
    times.append(now - t)
    t = now
    print(f"  torchvision step {i + 1}: {times[-1]:.2f} s", file=sys.stderr, flush=True)
med = float(np.median(times[warmup:]))
print(json.dumps({"seconds_per_step": med, "images_per_second": batch / med, "step_times": times,
                  "threads": torch.get_num_threads(),
                  "peak_rss_gb": hwm_kb() / 2 ** 20,
                  "ru_maxrss_gb_incl_parent_at_fork": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}))
"""


def run_torchvision(size, batch, steps, warmup, python=None, precision="float32"):
    """Time torchvision in a child process run by ``python`` (default: this interpreter), so
    torch can live in its own virtualenv and never becomes a dependency of the project."""
    python = python or sys.executable
    probe = subprocess.run([python, "-c", "import torchvision"], capture_output=True, text=True)
    if probe.returncode:
        return {"skipped": f"import torchvision failed under {python} (this script never installs it)"}
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([python, "-c", TORCH_CHILD, str(size), str(batch), str(steps), str(warmup), repo, precision],
                         capture_output=True, text=True)
    if out.returncode:
        return {"skipped": "torchvision run failed: " + out.stderr[-2000:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    from mrcnn.io.fsio import atomic_open

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--batch", type=int, default=1, help="IMAGES_PER_GPU")
    ap.add_argument("--backbone", default="resnet50", choices=["resnet50", "resnet101"])
    ap.add_argument("--steps", type=int, default=7, help="timed steps (median)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed first steps (tracing)")
    ap.add_argument("--torchvision", action="store_true", help="also time torchvision if importable")
    ap.add_argument("--rpn-channels", type=int, default=512,
                    help="RPN_CONV_CHANNELS (512: matterport's, which mask_rcnn_coco.h5 needs; torchvision uses 256)")
    ap.add_argument("--conv-grad", default="fast", choices=["fast", "tf"],
                    help="convolution gradients: mrcnn.modeling.conv's (default) or TensorFlow's own (the 'before')")
    ap.add_argument("--torchvision-python", default=None,
                    help="interpreter that can import torchvision (e.g. a separate venv); default: this one")
    ap.add_argument("--mixed-precision", choices=["bfloat16", "float16"], default=None,
                    help="ours in mixed bfloat16 (CPUs with AMX / AVX-512 BF16) or float16 (GPUs)")
    ap.add_argument("--torchvision-precision", choices=["float32", "bfloat16"], default="float32",
                    help="bfloat16: torchvision's forward under torch.autocast('cpu', torch.bfloat16)")
    ap.add_argument("--breakdown", action="store_true",
                    help="also time parts of the step on a cached batch (where the time goes)")
    ap.add_argument("--out", default=os.path.join("bench", "results", "train.json"))
    args = ap.parse_args(argv)

    key = (f"{args.backbone}_{args.size}_b{args.batch}" + (f"_rpn{args.rpn_channels}" if args.rpn_channels != 512 else "")
           + ("_tfgrad" if args.conv_grad == "tf" else "")
           + (f"_mixed_{args.mixed_precision}" if args.mixed_precision else "")
           + ("_tv_bfloat16" if args.torchvision and args.torchvision_precision == "bfloat16" else ""))
    ours = run_ours(args.size, args.batch, args.backbone, args.steps, args.warmup, args.rpn_channels, args.conv_grad,
                    "mixed_" + args.mixed_precision if args.mixed_precision else None)
    tv = (run_torchvision(args.size, args.batch, args.steps, args.warmup, args.torchvision_python,
                          args.torchvision_precision) if args.torchvision else None)
    parts = None
    if args.breakdown:
        print("breakdown (cached batch, median of 3):")
        parts = breakdown(args.size, args.batch, args.backbone)
    print(f"\n{key}: median of {args.steps} steps after {args.warmup} warm-up")
    print(f"  {'':<28} {'s/step':>8} {'images/s':>9} {'peak RSS GB':>12}")
    print(f"  {'ours (MaskRCNN.train step)':<28} {ours['seconds_per_step']:8.2f} "
          f"{ours['images_per_second']:9.3f} {ours['peak_rss_gb']:12.2f}")
    if tv and "skipped" not in tv:
        print(f"  {'torchvision maskrcnn_r50':<28} {tv['seconds_per_step']:8.2f} "
              f"{tv['images_per_second']:9.3f} {tv['peak_rss_gb']:12.2f}")
        print(f"  speed-up {ours['images_per_second'] / tv['images_per_second']:.2f}x (target >= 1.5x)")
    else:
        lo, hi = TORCHVISION_REFERENCE["seconds_per_step"]
        print(f"  torchvision: {tv['skipped'] if tv else 'not requested (--torchvision)'}")
        if args.size == 512 and args.batch == 1 and args.backbone == "resnet50":
            print(f"  vs the issue's torchvision figures ({lo}-{hi} s/step, "
                  f"{TORCHVISION_REFERENCE['peak_rss_gb']} GB peak): speed-up "
                  f"{lo / ours['seconds_per_step']:.2f}-{hi / ours['seconds_per_step']:.2f}x (target >= 1.5x), "
                  f"memory {ours['peak_rss_gb'] / TORCHVISION_REFERENCE['peak_rss_gb']:.2f}x")
    record = {}
    if os.path.exists(args.out):
        with open(args.out) as f:
            record = json.load(f)
    record.setdefault("settings", {})[key] = {
        "command": "python -m bench.bench_train " + " ".join(argv if argv is not None else sys.argv[1:]),
        "size": args.size, "batch": args.batch, "backbone": args.backbone, "steps": args.steps,
        "warmup": args.warmup, "ours": ours, "torchvision": tv, "breakdown_seconds": parts,
        "torchvision_reference_from_issue": TORCHVISION_REFERENCE, "env": env_info(DEFAULT_PACKAGES + ("torch", "torchvision"))}
    with atomic_open(args.out, "w") as f:
        json.dump(record, f, indent=2)
    print(f"wrote {args.out}")
    return record


if __name__ == "__main__":
    main()
