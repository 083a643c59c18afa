"""PyramidROIAlign on the training step's shapes: ``tf.image.crop_and_resize`` per level (default)
against the gather-based ``mrcnn.modeling.roi_align_gather`` (``use_gather=True``), eager graph and XLA.

Shapes: a 512 px image's P2..P5 (128..16 px, 256 channels, batch 1), 200 ROIs of 16..400 px
(every level) pooled to 7x7 and 66 to 14x14, forward and the gradient w.r.t. the feature maps,
in one ``tf.function``. Variants alternate in ``--rounds`` rounds so load changes hit all.

    .venv/bin/python -m bench.bench_roi_align [--rounds 5] [--repeats 5] [--size 512]

Prints a table and writes bench/results/roi_align.json.
"""
import argparse
import os
import sys
import time

import numpy as np


def make_inputs(size, rois, seed=0, channels=256):
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    maps = [tf.constant(rng.normal(size=(1, size // s, size // s, channels)).astype(np.float32))
            for s in (4, 8, 16, 32)]
    side = rng.uniform(16, 400, rois)
    cy, cx = rng.uniform(0, size, (2, rois))
    boxes = np.stack([cy - side / 2, cx - side / 2, cy + side / 2, cx + side / 2], 1) / size
    return maps, tf.constant(np.clip(boxes, 0, 1).astype(np.float32)), tf.zeros([rois], tf.int32)


def make_fn(use_gather, jit, size):
    import tensorflow as tf

    from mrcnn.modeling.roi_align import PyramidROIAlign

    box_layer = PyramidROIAlign((7, 7), (size, size), use_gather=use_gather)
    mask_layer = PyramidROIAlign((14, 14), (size, size), use_gather=use_gather)

    def run(maps, boxes, box_ix):
        with tf.GradientTape() as tape:
            tape.watch(maps)
            a = box_layer(boxes, box_ix, maps)
            b = mask_layer(boxes[:66], box_ix[:66], maps)
            loss = tf.reduce_sum(a * a) + tf.reduce_sum(b * b)
        return loss, tape.gradient(loss, maps)

    return tf.function(run, jit_compile=jit)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per variant and round")
    ap.add_argument("--out", default=os.path.join("bench", "results", "roi_align.json"))
    args = ap.parse_args(argv)
    maps, boxes, box_ix = make_inputs(args.size, 200)
    variants = {"crop_and_resize": make_fn(False, False, args.size), "gather": make_fn(True, False, args.size),
                "gather_xla": make_fn(True, True, args.size)}
    losses = {name: float(fn(maps, boxes, box_ix)[0]) for name, fn in variants.items()}   # traces
    # The gather variants agree; crop_and_resize differs where it puts a clipped box's edge
    # samples outside the map (0) by rounding (see mrcnn.modeling.roi_align_gather).
    assert abs(losses["gather"] - losses["gather_xla"]) <= 1e-4 * abs(losses["gather"]), losses
    times = {k: [] for k in variants}
    for r in range(args.rounds):
        for name, fn in variants.items():
            for _ in range(args.repeats):
                t = time.perf_counter()
                loss, grads = fn(maps, boxes, box_ix)
                _ = [g.numpy() for g in grads]
                times[name].append(time.perf_counter() - t)
        print(f"  round {r + 1}: " + ", ".join(f"{k} {np.median(v[-args.repeats:]) * 1000:.1f} ms"
                                              for k, v in times.items()) + f" (load {os.getloadavg()[0]:.1f})",
              flush=True)
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"\n{'variant':<16} {'ms (fwd + grad)':>16}")
    for k, v in med.items():
        print(f"{k:<16} {v * 1000:16.1f}")
    from mrcnn.io.fsio import atomic_write_json

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    atomic_write_json(args.out, {"command": "python -m bench.bench_roi_align " + " ".join(
        argv if argv is not None else sys.argv[1:]), "median_seconds": med, "times": times,
        "losses": losses, "loadavg_end": os.getloadavg()})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
