"""Arithmetic per training step, ours against torchvision's: is one doing more work than the other?

Ours: TensorFlow's graph profiler (``float_operation``) over the forward pass of the feature
network (ResNet-50 + FPN + the RPN on every level) at S x S, the box head on TRAIN_ROIS_PER_IMAGE
ROIs and the mask head on one ROI (it runs on the positives only: times their count, which
``--positives`` sets; the synthetic training benchmark's images give 3-8). The backward pass of a
convolution or matmul costs twice its forward (input and weight gradients), so a step is about
3x the forward.

torchvision (if ``--torchvision-python`` can import it; never a dependency): ``FlopCounterMode``
over one forward + backward of ``maskrcnn_resnet50_fpn(weights=None, num_classes=81)`` in train
mode on an S x S image with ``--positives`` ground-truth boxes and masks (its sampler adds the
ground truth to the proposals, so its mask head runs on those and their matches).

    .venv/bin/python -m bench.step_flops [--size 512] [--positives 6]
                                         [--torchvision-python /tmp/tv/bin/python]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from mrcnn.io.fsio import atomic_write_json

TORCH_CHILD = r"""
import json, sys, torch, torchvision
from torch.utils.flop_counter import FlopCounterMode
size, n = int(sys.argv[1]), int(sys.argv[2])
torch.manual_seed(0)
model = torchvision.models.detection.maskrcnn_resnet50_fpn(
    weights=None, weights_backbone=None, min_size=size, max_size=size, num_classes=81).train()
g = torch.Generator().manual_seed(0)
boxes, masks = [], torch.zeros(n, size, size, dtype=torch.uint8)
for i in range(n):
    y, x = torch.randint(0, size // 2, (2,), generator=g).tolist()
    h, w = torch.randint(size // 16, size // 3, (2,), generator=g).tolist()
    boxes.append([x, y, x + w, y + h])
    masks[i, y:y + h, x:x + w] = 1
target = [{"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.arange(1, n + 1), "masks": masks}]
image = torch.rand(3, size, size, generator=g)
with FlopCounterMode(display=False) as counter:
    losses = model([image], target)
    sum(losses.values()).backward()
per_op = {str(k): v / 1e9 for k, v in counter.get_flop_counts()["Global"].items()}
print(json.dumps({"step_gflop": counter.get_total_flops() / 1e9, "per_op_gflop": per_op,
                  "torch": torch.__version__, "torchvision": torchvision.__version__}))
"""


def ours(size, positives):
    import tensorflow as tf

    from bench.bench_train import make_config
    from mrcnn.model import MaskRCNN

    config = make_config(size, 1, "resnet50")
    net = MaskRCNN("training", config, "/tmp/bench_train_logs").keras_model

    def forward_gflop(fn, shape):
        graph = tf.function(fn).get_concrete_function(tf.TensorSpec(shape, tf.float32)).graph
        opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
        opts["output"] = "none"
        return tf.compat.v1.profiler.profile(graph, options=opts).total_float_ops / 1e9

    pool, mask_pool, ch = config.POOL_SIZE, config.MASK_POOL_SIZE, config.TOP_DOWN_PYRAMID_SIZE
    rois = config.TRAIN_ROIS_PER_IMAGE
    parts = {
        "features (backbone + FPN + RPN) forward": forward_gflop(
            lambda x: net.feature_model(x, training=False), (1, size, size, 3)),
        f"box head forward, {rois} ROIs": forward_gflop(
            lambda x: net.box_head(x, training=False), (rois, pool, pool, ch)),
        "mask head forward, per ROI": forward_gflop(
            lambda x: net.mask_head(x, training=False), (1, mask_pool, mask_pool, ch)),
    }
    values = list(parts.values())
    forward = values[0] + values[1] + positives * values[2]
    return {"forward_parts_gflop": parts, "positives": positives, "forward_gflop": forward,
            "step_gflop_approx": 3 * forward}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--positives", type=int, default=6, help="positive ROIs / ground-truth instances")
    ap.add_argument("--torchvision-python", default=None)
    ap.add_argument("--out", default=os.path.join("bench", "results", "step_flops.json"))
    args = ap.parse_args(argv)
    result = {"command": "python -m bench.step_flops " + " ".join(sys.argv[1:] if argv is None else argv),
              "size": args.size, "ours": ours(args.size, args.positives)}
    for name, value in result["ours"]["forward_parts_gflop"].items():
        print(f"  ours {name:<44} {value:8.2f} GFLOP")
    print(f"  ours step (3 x forward, {args.positives} positive ROIs) {result['ours']['step_gflop_approx']:14.1f} GFLOP")
    if args.torchvision_python:
        out = subprocess.run([args.torchvision_python, "-c", TORCH_CHILD, str(args.size), str(args.positives)],
                             capture_output=True, text=True)
        if out.returncode:
            result["torchvision"] = {"skipped": out.stderr[-2000:]}
            print("  torchvision: failed\n" + out.stderr[-2000:])
        else:
            result["torchvision"] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"  torchvision step (FlopCounterMode, {args.positives} instances) "
                  f"{result['torchvision']['step_gflop']:10.1f} GFLOP")
    atomic_write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
