"""float32 against mixed_bfloat16 (and the XLA-compiled step) on this CPU: training-step time,
and learning over 200 steps.

Step time: both models (same seed, same weights draw) are built and traced in one process and
their steps alternate in ``--rounds`` rounds of ``--steps`` steps on one cached batch of the
real pipeline, so load changes on a shared machine hit both. Settings as bench_pipeline's:
"small128" (small backbone, 128 px, batch 4: bench_learning's model) and "r50_512" (ResNet-50
FPN, 512 px, batch 1). Learning: bench_learning's model and data (shapes, 128 px, batch 4,
lr 0.02, 100 warm-up steps) trained from the same seed for ``--learn-steps`` steps in each
precision through ``MaskRCNN.train()``; the mean loss of every ``--epoch-steps`` is reported.
bfloat16 pays off only where the CPU has native bf16 (AVX-512 BF16 / AMX: see the "flags").

    .venv/bin/python -m bench.bench_bfloat16 [--settings small128,r50_512] [--rounds 5] [--steps 4]
                                            [--variants float32,mixed_bfloat16,float32_xla]
                                            [--learn-steps 200] [--skip-learning]

Prints tables and writes bench/results/bfloat16.json.
"""
import argparse
import os
import sys
import time

import numpy as np

# variant: config overrides (bfloat16, and the XLA-compiled step in float32).
VARIANTS = {"float32": {}, "mixed_bfloat16": {"MIXED_PRECISION": "mixed_bfloat16"},
            "float32_xla": {"XLA_COMPILE": True}}
PRECISIONS = ("float32", "mixed_bfloat16")


def cpu_flags():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return sorted(f for f in line.split(":")[1].split() if "bf16" in f or f.startswith("amx"))
    return []


def build_step(setting, variant):
    """(step function, cached batch, model) for one bench_pipeline setting and VARIANTS key."""
    from bench.bench_pipeline import build_setting

    trainer, pipe = build_setting(setting, VARIANTS[variant], images=50, log_dir="/tmp/bench_bfloat16_logs")
    cached = next(iter(trainer.distribute(pipe, 0, 1)))
    return trainer.train_step_fn, cached, trainer.model


def time_steps(settings, rounds, steps, variants=PRECISIONS):
    import tensorflow as tf

    results = {}
    for setting in settings:
        built = {p: build_step(setting, p) for p in variants}
        times = {p: [] for p in variants}
        losses = {p: [] for p in variants}
        k = 0
        for p in variants:   # first call traces
            t = time.perf_counter()
            float(built[p][0](built[p][1], tf.constant([1, k], tf.int64))["loss"])
            print(f"  {setting} {p}: trace + first step {time.perf_counter() - t:.1f} s", flush=True)
        for r in range(rounds):
            for p in variants if r % 2 == 0 else variants[::-1]:
                step, batch, _ = built[p]
                for _ in range(steps):
                    k += 1
                    t = time.perf_counter()
                    losses[p].append(float(step(batch, tf.constant([1, k], tf.int64))["loss"]))
                    times[p].append(time.perf_counter() - t)
            load = os.getloadavg()[0]
            print(f"  {setting} round {r + 1}: " + ", ".join(
                f"{p} {np.median(times[p][-steps:]):.3f} s" for p in variants) + f" (load {load:.1f})", flush=True)
        med = {p: float(np.median(times[p])) for p in variants}
        results[setting] = {"median_seconds": med, "speedup_vs_float32": {p: med["float32"] / med[p] for p in variants},
                            "times": times, "losses_finite": {p: bool(np.isfinite(losses[p]).all()) for p in variants}}
        del built
    return results


def learn(precision, args):
    """Loss per ``epoch_steps`` over ``learn_steps`` steps of bench_learning's setting."""
    import keras

    from bench.bench_learning import make_config
    from mrcnn.model import MaskRCNN
    from mrcnn.data.shapes import ShapesDataset

    os.environ.setdefault("TQDM_DISABLE", "1")   # one line per run instead of progress bars
    ns = argparse.Namespace(batch=4, fpn=64, rois=64, min_confidence=0.05, lr=0.02, warmup=100,
                            steps=args.epoch_steps, seed=1)
    config = make_config(ns, "training")
    config.update({"MIXED_PRECISION": None if precision == "float32" else precision})
    ds = ShapesDataset()
    ds.load_shapes(1000, 128, 128, seed=1)
    ds.prepare()
    keras.utils.set_random_seed(1)
    model = MaskRCNN("training", config, "/tmp/bench_bfloat16_logs")
    model.keras_model.stop_training = False
    t = time.perf_counter()
    history = model.train(ds, None, 0.02, args.learn_steps // args.epoch_steps, "all")
    seconds = time.perf_counter() - t
    curve = [h["loss"] for h in history]
    print(f"  learning {precision}: loss per {args.epoch_steps} steps {[round(v, 3) for v in curve]}, "
          f"{seconds:.0f} s", flush=True)
    return {"loss_per_epoch": curve, "final_epoch_loss": curve[-1], "seconds_incl_trace": seconds,
            "history": [{k: v for k, v in h.items() if k != "checkpoint"} for h in history]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--settings", default="small128,r50_512")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=4, help="steps per precision and round")
    ap.add_argument("--learn-steps", type=int, default=200)
    ap.add_argument("--epoch-steps", type=int, default=50)
    ap.add_argument("--skip-learning", action="store_true")
    ap.add_argument("--variants", default="float32,mixed_bfloat16", help="step-time variants: " + ", ".join(VARIANTS))
    ap.add_argument("--out", default=os.path.join("bench", "results", "bfloat16.json"))
    args = ap.parse_args(argv)
    record = {"command": "python -m bench.bench_bfloat16 " + " ".join(argv if argv is not None else sys.argv[1:]),
              "cpu_bf16_flags": cpu_flags(), "loadavg_start": os.getloadavg()}
    variants = tuple(args.variants.split(","))
    record["step"] = time_steps(args.settings.split(","), args.rounds, args.steps, variants) if args.settings else {}
    if not args.skip_learning:
        record["learning"] = {p: learn(p, args) for p in PRECISIONS}
    record["loadavg_end"] = os.getloadavg()
    print(f"\nCPU bf16 flags: {' '.join(record['cpu_bf16_flags']) or 'none'}")
    for name, r in record["step"].items():
        print(f"{name}: " + ", ".join(f"{p} {s:.3f} s/step ({r['speedup_vs_float32'][p]:.2f}x)"
                                      for p, s in r["median_seconds"].items()))
    for p, r in record.get("learning", {}).items():
        print(f"learning {p:<15} final {args.epoch_steps}-step mean loss {r['final_epoch_loss']:.3f}")
    from mrcnn.io.fsio import atomic_write_json

    atomic_write_json(args.out, record)
    print(f"wrote {args.out}")
    return record


if __name__ == "__main__":
    main()
