"""Would Winograd 3x3 convolutions help on this CPU? F(2x2, 3x3) written in TensorFlow ops against
``tf.nn.conv2d`` on the FPN/RPN shapes at 512 px (a measured negative result, kept as evidence).

Winograd needs 2.25x fewer multiplies, but here the input and output transforms are element-wise
passes over tensors 4x the size of the feature map, and they cost more than the multiplies save.
Prints median ms of ``--repeats`` after a warm-up and writes bench/results/winograd.json.

    .venv/bin/python -m bench.bench_winograd [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import tensorflow as tf

SHAPES = [(128, 256, 512), (128, 256, 256), (64, 256, 512), (64, 256, 256)]  # (H = W, Cin, Cout)


def winograd_3x3_same(x, g):
    """F(2x2,3x3) Winograd, stride 1, SAME: x [N, H, W, C] (H, W even), g [3, 3, C, O] -> [N, H, W, O].

    Y = A^T [ (G g G^T) . (B^T d B) ] A per 4x4 input tile d (2x2 outputs), the elementwise product
    summed over C as 16 matmuls."""
    n, h, w, c = x.shape
    o, th, tw = g.shape[-1], h // 2, w // 2
    G = tf.constant([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], tf.float32)
    U = tf.einsum("ai,ijco,bj->abco", G, g, G)                      # [4,4,C,O]
    U = tf.reshape(U, (16, c, o))
    xp = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
    R = [xp[:, k:k + 2 * th:2] for k in range(4)]                     # [N,TH,W+2,C]
    rows = [R[0] - R[2], R[1] + R[2], R[2] - R[1], R[1] - R[3]]
    V = []
    for t in rows:
        Cc = [t[:, :, k:k + 2 * tw:2] for k in range(4)]              # [N,TH,TW,C]
        V += [Cc[0] - Cc[2], Cc[1] + Cc[2], Cc[2] - Cc[1], Cc[1] - Cc[3]]
    V = tf.reshape(tf.stack(V), (16, -1, c))                          # [16, N*TH*TW, C]
    M = tf.matmul(V, U)                                               # [16, P, O]
    M = tf.reshape(M, (4, 4, n, th, tw, o))
    o0, o1 = M[0] + M[1] + M[2], M[1] - M[2] - M[3]                  # A^T on rows: [4 cols, ...]
    Y = []
    for r in (o0, o1):
        Y.append(tf.stack([r[0] + r[1] + r[2], r[1] - r[2] - r[3]], axis=3))   # [N,TH,TW,2,O]
    Y = tf.stack(Y, axis=2)                                           # [N,TH,2,TW,2,O]
    return tf.reshape(Y, (n, h, w, o))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=os.path.join("bench", "results", "winograd.json"))
    args = ap.parse_args(argv)
    from bench.bench_conv_grad import median_ms
    from bench.env import env_info
    from mrcnn.io.fsio import atomic_write_json

    rows = []
    print(f"{'H=W':>5}{'Cin':>5}{'Cout':>6}{'conv2d ms':>11}{'winograd ms':>13}{'rel err':>9}")
    for h, c, o in SHAPES:
        rng = np.random.default_rng(0)
        x = tf.constant(rng.normal(size=(1, h, h, c)).astype(np.float32))
        g = tf.constant(rng.normal(0, 0.05, size=(3, 3, c, o)).astype(np.float32))
        ref = tf.function(lambda: tf.nn.conv2d(x, g, 1, "SAME"), autograph=False)
        win = tf.function(lambda: winograd_3x3_same(x, g), autograph=False)
        err = float(tf.reduce_max(tf.abs(ref() - win())) / tf.reduce_max(tf.abs(ref())))
        row = {"h": h, "cin": c, "cout": o, "conv2d_ms": median_ms(ref, args.repeats),
               "winograd_ms": median_ms(win, args.repeats), "max_rel_err": err}
        rows.append(row)
        print(f"{h:5d}{c:5d}{o:6d}{row['conv2d_ms']:11.1f}{row['winograd_ms']:13.1f}{err:9.1e}", flush=True)
    atomic_write_json(args.out, {"command": "python -m bench.bench_winograd " + " ".join(sys.argv[1:] if argv is None else argv),
                                 "rows": rows, "env": env_info()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
