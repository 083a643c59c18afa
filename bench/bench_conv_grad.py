"""Convolution gradients on this model's shapes: TensorFlow's CPU ops against ``mrcnn.modeling.conv``.

For each shape, times (median of ``--repeats`` after one warm-up, ms):
- fwd: ``tf.nn.conv2d``;
- tf dW / tf dX: ``Conv2DBackpropFilter`` / ``Conv2DBackpropInput``, what ``keras.layers.Conv2D``'s
  backward pass runs;
- ours dW / ours dX: the gradients ``mrcnn.modeling.conv.fast_grad_conv2d`` computes instead (per-tap
  matmuls, or TF's filter gradient below 64x64 pixels; a forward conv with the flipped kernel);
- tf f+b / ours f+b: forward and both gradients under a GradientTape, end to end.
Each row also gives the forward GFLOP (2*outputs*K*K*Cin; each gradient costs the same) and the
largest relative difference between our gradients and TF's.

    .venv/bin/python -m bench.bench_conv_grad [--repeats 5] [--out bench/results/conv_grad.json]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

# (name, n, spatial, cin, cout, k, stride, padding) at 512 px, batch 1.
SHAPES = [
    ("fpn_p2 3x3", 1, 128, 256, 256, 3, 1, "same"),
    ("rpn_conv_shared P2", 1, 128, 256, 512, 3, 1, "same"),
    ("res2 3x3", 1, 128, 64, 64, 3, 1, "same"),
    ("res3 3x3", 1, 64, 128, 128, 3, 1, "same"),
    ("res4 3x3", 1, 32, 256, 256, 3, 1, "same"),
    ("res5 3x3", 1, 16, 512, 512, 3, 1, "same"),
    ("res2 1x1 256->64", 1, 128, 256, 64, 1, 1, "valid"),
    ("mask head 66 ROIs", 66, 14, 256, 256, 3, 1, "same"),
]


def median_ms(fn, repeats):
    """Median wall ms of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def run_shape(name, n, spatial, cin, cout, k, stride, padding, repeats):
    import tensorflow as tf

    from mrcnn.modeling import conv as conv_module

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(0, 1, (n, spatial, spatial, cin)).astype(np.float32))
    w = tf.constant(rng.normal(0, 0.05, (k, k, cin, cout)).astype(np.float32))
    y = tf.nn.conv2d(x, w, stride, padding.upper())
    dy = tf.constant(rng.normal(0, 1, y.shape).astype(np.float32))
    strides = [1, stride, stride, 1]

    def tape_grads(conv):
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            out = conv()
        return tape.gradient(out, [x, w], output_gradients=dy)

    # Our two gradients called directly (stride 1 only: strided convolutions keep TF's gradient;
    # rewriting a 1x1 stride-2 one as subsample + 1x1 made its backward pass 3x slower).
    if padding == "valid" and k > 1:
        dy_pad = tf.pad(dy, [[0, 0], [k - 1, k - 1], [k - 1, k - 1], [0, 0]])
    else:
        dy_pad = dy
    dx_padding = "VALID" if padding == "valid" and k > 1 else "SAME"

    def fn(f):
        return tf.function(f, autograph=False)

    fns = {
        "fwd": fn(lambda: tf.nn.conv2d(x, w, stride, padding.upper())),
        "tf_dw": fn(lambda: tf.raw_ops.Conv2DBackpropFilter(
            input=x, filter_sizes=w.shape, out_backprop=dy, strides=strides, padding=padding.upper())),
        "tf_dx": fn(lambda: tf.raw_ops.Conv2DBackpropInput(
            input_sizes=x.shape, filter=w, out_backprop=dy, strides=strides, padding=padding.upper())),
        "ours_dw": fn(lambda: conv_module.filter_grad(x, dy, k, padding)),
        "ours_dx": fn(lambda: tf.nn.conv2d(dy_pad, conv_module.flip_transpose(w), 1, dx_padding)),
        "tf_fb": fn(lambda: tape_grads(lambda: tf.nn.conv2d(x, w, stride, padding.upper()))),
        "ours_fb": fn(lambda: tape_grads(lambda: conv_module.fast_grad_conv2d(x, w, (stride, stride), padding))),
    }
    ref_dx, ref_dw = fns["tf_fb"]()
    our_dx, our_dw = fns["ours_fb"]()
    diff = max(float(tf.reduce_max(tf.abs(a - b)) / tf.reduce_max(tf.abs(b)))
               for a, b in ((our_dx, ref_dx), (our_dw, ref_dw)))
    row = {"name": name, "shape": [n, spatial, spatial, cin, cout, k, stride, padding],
           "gflop_forward": 2 * float(np.prod(y.shape)) * k * k * cin / 1e9, "max_rel_diff": diff}
    row.update({key: median_ms(f, repeats) for key, f in fns.items()})
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=os.path.join("bench", "results", "conv_grad.json"))
    args = ap.parse_args(argv)
    from bench.env import env_info
    from mrcnn.io.fsio import atomic_write_json

    rows = []
    print(f"{'shape':<22}{'GFLOP':>7}{'fwd':>8}{'tf dW':>8}{'ours dW':>9}{'tf dX':>8}{'ours dX':>9}"
          f"{'tf f+b':>9}{'ours f+b':>10}{'ratio':>7}{'diff':>9}   (ms)")
    for shape in SHAPES:
        r = run_shape(*shape, repeats=args.repeats)
        rows.append(r)
        print(f"{r['name']:<22}{r['gflop_forward']:7.2f}{r['fwd']:8.1f}{r['tf_dw']:8.1f}{r['ours_dw']:9.1f}"
              f"{r['tf_dx']:8.1f}{r['ours_dx']:9.1f}{r['tf_fb']:9.1f}{r['ours_fb']:10.1f}"
              f"{r['tf_fb'] / r['ours_fb']:7.2f}{r['max_rel_diff']:9.1e}", flush=True)
    total_tf, total_ours = sum(r["tf_fb"] for r in rows), sum(r["ours_fb"] for r in rows)
    print(f"forward+backward over all shapes: TF {total_tf:.0f} ms, ours {total_ours:.0f} ms "
          f"({total_tf / total_ours:.2f}x)")
    atomic_write_json(args.out, {"command": "python -m bench.bench_conv_grad " + " ".join(sys.argv[1:]),
                                 "repeats": args.repeats, "rows": rows, "env": env_info()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
