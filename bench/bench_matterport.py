"""detect() latency and outputs, ours against matterport's own code, same weights, same image, same run.

matterport's code runs in a child process of ``--matterport-python`` (an interpreter whose
TensorFlow is one matterport's code runs on, e.g. TF 2.15 / Keras 2) from ``--matterport-repo``
(a checkout whose ``mrcnn/`` is matterport's, e.g. akTwelve/Mask_RCNN, the TF 2 port of
matterport master 3deaec5). Neither is installed by this script.

Per size: our model (ResNet-50, 81 classes, random weights seeded as in ``bench_inference``) is
built once and its weights saved in matterport's HDF5 layout; the child builds matterport's model
with the same config, loads that file by name (as ``MaskRCNN.load_weights(by_name=True)`` does),
and runs ``detect()`` on the same image. Rounds alternate ours and theirs, so both see the same
machine. The outputs are compared: detection count, boxes matched by IoU, score and mask agreement.

With ``--train`` the training step is timed instead (batch 1, all layers, bench_train's synthetic
images): ours is bench_train's step; theirs is matterport's own ``MaskRCNN.train()``, timed between
consecutive batch ends by a callback. To run at all on TF 2.15 with today's packages, matterport's
code needs three patches in the child, the ones its users apply: the legacy SGD (Keras >= 2.11's
has no graph-mode path), bool masks cast to float before scikit-image's resize (>= 0.19 refuses
bool), and one data worker (with its forked workers the run hung; its data takes ~0.1 s of a
multi-second step, so one is enough).

    .venv/bin/python -m bench.bench_matterport --matterport-python /path/tf215/bin/python \\
        --matterport-repo /path/Mask_RCNN [--sizes 512,1024] [--rounds 2] [--repeats 3]
        [--precisions float32,mixed_bfloat16] [--train --steps 5 --warmup 2]

Writes bench/results/matterport_inference.json (matterport_train.json with --train).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from bench.bench_inference import SETTINGS, bench_image, make_config
from bench.env import env_info, loadavg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, os, sys
import numpy as np
if not hasattr(np, "bool"):   # matterport's unmold_mask uses np.bool: gone in NumPy 1.24-1.26, back in 2.0
    np.bool = bool
sys.path[:0] = [sys.argv[1], sys.argv[2]]   # matterport's mrcnn; this checkout's bench (image, timing)
import h5py
import tensorflow as tf
from mrcnn.config import Config
import mrcnn.model as modellib
from bench.bench_inference import bench_image
from bench.bench_matterport import timed_detect

size, min_conf, max_inst = int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
weights, repeats, seed, out = sys.argv[6], int(sys.argv[7]), int(sys.argv[8]), sys.argv[9]

class BenchConfig(Config):
    NAME = "bench"
    GPU_COUNT = 1
    IMAGES_PER_GPU = 1
    NUM_CLASSES = 81
    BACKBONE = "resnet50"
    IMAGE_MIN_DIM = size
    IMAGE_MAX_DIM = size
    DETECTION_MIN_CONFIDENCE = min_conf
    DETECTION_MAX_INSTANCES = max_inst

model = modellib.MaskRCNN(mode="inference", config=BenchConfig(), model_dir=os.path.dirname(out))
def loaded():
    with h5py.File(weights, "r") as f:
        want = f["mrcnn_class_logits"]["mrcnn_class_logits"]["bias:0"][:]
    return bool(np.array_equal(model.keras_model.get_layer("mrcnn_class_logits").get_weights()[1], want))

# matterport's own load_weights imports tensorflow.python.keras, the legacy copy of Keras inside
# TF: on TF 2.15 its loader sets the values in that copy's session, not the model's, so nothing
# loads and nothing is said. Keras 2's own by-name loader is what it meant to call.
try:
    model.load_weights(weights, by_name=True)
except ImportError:
    pass
own_loader_worked = loaded()
if not own_loader_worked:
    model.keras_model.load_weights(weights, by_name=True)
assert loaded(), "the weights did not load"
walls, r = timed_detect(model, bench_image(size, seed), repeats)
np.savez(out, rois=r["rois"], class_ids=r["class_ids"], scores=r["scores"], masks=np.packbits(r["masks"]),
         mask_shape=np.array(r["masks"].shape))
print(json.dumps({"runs_seconds": walls, "tensorflow": tf.__version__, "detections": len(r["rois"]),
                  "matterport_load_weights_worked": own_loader_worked}))
"""


TRAIN_CHILD = r"""
import json, multiprocessing, sys, time
import numpy as np
if not hasattr(np, "bool"):
    np.bool = bool
# matterport's train() forks cpu_count() data workers after TensorFlow has started; unpatched, that
# hung (most likely a worker died of the resize error below). One worker: Keras' threaded enqueuer.
multiprocessing.cpu_count = lambda: 1
sys.path[:0] = [sys.argv[1], sys.argv[2]]   # matterport's mrcnn; this checkout's bench (the images)
import tensorflow as tf
from tensorflow import keras
from mrcnn.config import Config
from mrcnn import utils as mutils
import mrcnn.model as modellib
from bench.bench_train import synthetic_dataset

_resize = mutils.resize
def _resize_bool_as_float(image, *args, **kwargs):
    # scikit-image >= 0.19 refuses the bool masks matterport's minimize_mask passes; older
    # versions converted them to float in [0, 1], as here.
    return _resize(image.astype(np.float32) if image.dtype == bool else image, *args, **kwargs)
mutils.resize = _resize_bool_as_float
keras.optimizers.SGD = keras.optimizers.legacy.SGD   # Keras >= 2.11's SGD has no graph-mode path

size, steps, warmup, logs = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]

class TrainBenchConfig(Config):
    NAME = "bench_train"
    GPU_COUNT = 1
    IMAGES_PER_GPU = 1
    NUM_CLASSES = 81
    BACKBONE = "resnet50"
    IMAGE_MIN_DIM = size
    IMAGE_MAX_DIM = size
    STEPS_PER_EPOCH = steps + warmup
    VALIDATION_STEPS = 1

model = modellib.MaskRCNN(mode="training", config=TrainBenchConfig(), model_dir=logs)
ends = []

class StepEnds(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        ends.append((time.perf_counter(), float((logs or {}).get("loss", float("nan")))))

dataset = synthetic_dataset(size, 64)
start = time.perf_counter()
model.train(dataset, dataset, learning_rate=0.001, epochs=1, layers="all", custom_callbacks=[StepEnds()])
times = np.diff([start] + [t for t, _ in ends])
print(json.dumps({"step_times": times.tolist(), "losses": [loss for _, loss in ends], "tensorflow": tf.__version__}))
"""


def timed_detect(model, image, repeats):
    """Seconds of ``repeats`` detect() calls after two warm-up calls, and the last result."""
    model.detect([image])
    model.detect([image])
    walls = []
    for _ in range(repeats):
        t = time.perf_counter()
        r = model.detect([image])[0]
        walls.append(time.perf_counter() - t)
    return walls, r


def build_ours(size, precision, seed, weights=None, setting="default", tame=False):
    """Our inference model at ``size`` with bench_inference's seeded weights (or ``weights``);
    ``tame``: heads tamed as in the tests, so that outputs are not saturated ties."""
    import keras

    from mrcnn.model import MaskRCNN

    keras.utils.set_random_seed(seed)
    min_conf, max_inst = SETTINGS[setting][:2]
    model = MaskRCNN(mode="inference", config=make_config(size, "resnet50", min_conf, max_inst, precision),
                     model_dir=os.path.join("bench", "results", "logs"))
    if weights:
        model.load_weights(weights, by_name=True)
    if tame:
        from tests.helpers import tame_random_heads

        tame_random_heads(model, seed=seed)
    return model


def run_child(args, source, child_args, cwd):
    """``source`` under ``--matterport-python`` with argv [matterport repo, this checkout,
    *child_args]; returns the JSON of its last stdout line."""
    python = args.matterport_python
    python = os.path.abspath(python) if os.sep in python else python   # the child runs in ``cwd``
    cmd = [python, "-c", source, os.path.abspath(args.matterport_repo), ROOT, *map(str, child_args)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH="")
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env)
    if p.returncode:
        raise RuntimeError(f"matterport child under {args.matterport_python} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def run_matterport(args, size, weights, out, setting="default"):
    """matterport's detect() in the child: its timings, and its last result saved to ``out``."""
    min_conf, max_inst = SETTINGS[setting][:2]
    return run_child(args, CHILD, (size, min_conf, max_inst, weights, args.repeats, args.seed, out),
                     os.path.dirname(out))


def agreement(ours, theirs_npz):
    """Detections matched greedily by box IoU >= 0.9 (same class): counts, score and mask IoU."""
    from mrcnn.structures.boxes import compute_overlaps

    t = np.load(theirs_npz)
    t_masks = np.unpackbits(t["masks"])[: int(np.prod(t["mask_shape"]))].reshape(t["mask_shape"]).astype(bool)
    iou = compute_overlaps(ours["rois"].astype(np.float64), t["rois"].astype(np.float64))
    matched, score_diff, mask_iou = 0, [], []
    used = set()
    for i in range(len(ours["rois"])):
        for j in (np.argsort(-iou[i]) if iou.shape[1] else []):
            if j in used or iou[i, j] < 0.9:
                break
            if ours["class_ids"][i] == t["class_ids"][j]:
                used.add(j)
                matched += 1
                score_diff.append(abs(float(ours["scores"][i]) - float(t["scores"][j])))
                a, b = ours["masks"][..., i], t_masks[..., j]
                union = (a | b).sum()
                mask_iou.append(float((a & b).sum() / union) if union else 1.0)   # both empty: agree
                break
    return {"ours": len(ours["rois"]), "theirs": len(t["rois"]), "matched": matched,
            "max_score_diff": max(score_diff) if score_diff else None,
            "min_mask_iou": min(mask_iou) if mask_iou else None,
            "mean_mask_iou": float(np.mean(mask_iou)) if mask_iou else None}


def compare_outputs(args, size, tmp):
    """Ours (each precision) against matterport's on tamed weights with DETECTION_MIN_CONFIDENCE 0
    (bench_inference's "dense" setting): untamed random heads saturate every score to 1.0 and
    every box to the image border, which compares nothing."""
    import keras

    weights = os.path.join(tmp, f"tamed_{size}.h5")
    image = bench_image(size, args.seed)
    results = {}
    for precision in args.precisions.split(","):
        model = build_ours(size, precision, args.seed, setting="dense", tame=True)
        if not results:
            model.save_weights(weights)
        results[precision] = model.detect([image])[0]
        del model
        keras.backend.clear_session()
    out = os.path.join(tmp, f"matterport_tamed_{size}.npz")
    run_matterport(args, size, weights, out, setting="dense")
    return {p: agreement(r, out) for p, r in results.items()}


def time_size(args, size, tmp):
    """Rounds of ours (each precision) and matterport's detect() at ``size``, bench_inference's
    "default" setting (its seeded random weights give 100 detections)."""
    import keras

    weights = os.path.join(tmp, f"weights_{size}.h5")
    models = {}
    for precision in args.precisions.split(","):
        models[precision] = build_ours(size, precision, args.seed, weights if models else None)
        if len(models) == 1:
            models[precision].save_weights(weights)
    image = bench_image(size, args.seed)
    rec = {"size": size, "ours": {p: [] for p in models}, "matterport": [], "detections": {}}
    for rnd in range(args.rounds):
        for precision, model in models.items():
            walls, r = timed_detect(model, image, args.repeats)
            rec["ours"][precision] += walls
            rec["detections"][precision] = len(r["rois"])
            print(f"round {rnd + 1} ours {size}px {precision}: {np.median(walls):.3f} s "
                  f"({len(r['rois'])} detections)", flush=True)
        theirs = run_matterport(args, size, weights, os.path.join(tmp, f"matterport_{size}.npz"))
        rec["matterport"] += theirs["runs_seconds"]
        rec["detections"]["matterport"] = theirs["detections"]
        rec["matterport_tensorflow"] = theirs["tensorflow"]
        rec["matterport_load_weights_worked"] = theirs["matterport_load_weights_worked"]
        print(f"round {rnd + 1} matterport {size}px (TF {theirs['tensorflow']}): "
              f"{np.median(theirs['runs_seconds']):.3f} s ({theirs['detections']} detections)", flush=True)
    rec["median_seconds"] = {"matterport": float(np.median(rec["matterport"])),
                             **{p: float(np.median(w)) for p, w in rec["ours"].items()}}
    del models
    keras.backend.clear_session()
    return rec


def time_train(args, size, tmp):
    """Rounds of our training step (bench_train's, each precision) and matterport's own
    ``train()`` at ``size``, batch 1, ResNet-50, 81 classes, the same synthetic images."""
    from bench.bench_train import run_ours

    rec = {"size": size, "ours": {p: [] for p in args.precisions.split(",")}, "matterport": []}
    for rnd in range(args.rounds):
        for precision, times in rec["ours"].items():
            r = run_ours(size, 1, "resnet50", args.steps, args.warmup,
                         precision=None if precision == "float32" else precision)
            times += r["step_times"][args.warmup:]
        theirs = run_child(args, TRAIN_CHILD, (size, args.steps, args.warmup, os.path.join(tmp, "logs")), tmp)
        rec["matterport"] += theirs["step_times"][args.warmup:]
        rec["matterport_tensorflow"] = theirs["tensorflow"]
        print(f"round {rnd + 1} {size}px s/step: " + ", ".join(
            f"ours {k} {np.median(v[-args.steps:]):.2f}" for k, v in rec["ours"].items())
            + f", matterport {np.median(theirs['step_times'][args.warmup:]):.2f}", flush=True)
    rec["median_seconds_per_step"] = {"matterport": float(np.median(rec["matterport"])),
                                      **{k: float(np.median(v)) for k, v in rec["ours"].items()}}
    return rec


def report(records):
    print(f"\n{'size':>5} {'precision':<15} {'ours s':>7} {'matterport s':>13} {'speed-up':>9} "
          f"{'tamed dets (ours/theirs/matched)':>33} {'max score diff':>15} {'min mask IoU':>13}")
    for rec in records:
        if not rec["matterport_load_weights_worked"]:
            print(f"{rec['size']:>5} matterport's MaskRCNN.load_weights(by_name=True) left the weights "
                  f"unloaded on TF {rec['matterport_tensorflow']}; Keras' own loader was used instead")
        theirs = rec["median_seconds"]["matterport"]
        for precision in rec["ours"]:
            ours, a = rec["median_seconds"][precision], rec["agreement"][precision]
            print(f"{rec['size']:>5} {precision:<15} {ours:>7.3f} {theirs:>13.3f} {theirs / ours:>8.2f}x "
                  f"{a['ours']:>16}/{a['theirs']}/{a['matched']:<10} "
                  f"{a['max_score_diff'] if a['max_score_diff'] is not None else float('nan'):>15.2e} "
                  f"{a['min_mask_iou'] if a['min_mask_iou'] is not None else float('nan'):>13.3f}")


def main(argv=None):
    from mrcnn.io.fsio import atomic_write_json

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--matterport-python", required=True, help="interpreter whose TensorFlow runs matterport's code")
    ap.add_argument("--matterport-repo", required=True, help="checkout whose mrcnn/ is matterport's code")
    ap.add_argument("--sizes", default="512,1024")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of ours and theirs")
    ap.add_argument("--repeats", type=int, default=3, help="timed detect() calls per round, after 2 warm-up calls")
    ap.add_argument("--precisions", default="float32", help="ours: float32 and/or mixed_bfloat16, comma-separated")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train", action="store_true", help="time the training step (batch 1) instead of detect()")
    ap.add_argument("--steps", type=int, default=5, help="--train: timed steps per round")
    ap.add_argument("--warmup", type=int, default=2, help="--train: untimed first steps (graph building)")
    ap.add_argument("--out", default=None,
                    help="default: bench/results/matterport_inference.json (matterport_train.json with --train)")
    args = ap.parse_args(argv)
    args.out = args.out or os.path.join("bench", "results", f"matterport_{'train' if args.train else 'inference'}.json")
    env = env_info()
    with tempfile.TemporaryDirectory(prefix="bench-matterport-") as tmp:
        records = []
        for size in (int(s) for s in args.sizes.split(",")):
            if args.train:
                records.append(time_train(args, size, tmp))
                continue
            rec = time_size(args, size, tmp)
            rec["agreement"] = compare_outputs(args, size, tmp)
            records.append(rec)
    if args.train:
        for rec in records:
            m = rec["median_seconds_per_step"]
            print(f"{rec['size']:>5} px s/step: matterport {m['matterport']:.2f}; "
                  + "; ".join(f"ours {k} {v:.2f} ({m['matterport'] / v:.2f}x)" for k, v in m.items() if k != "matterport"))
    else:
        report(records)
    env["loadavg_at_end"] = loadavg()
    record = {"command": "python -m bench.bench_matterport " + " ".join(argv if argv is not None else sys.argv[1:]),
              "setting": dict(zip(("min_confidence", "max_instances"), SETTINGS["default"][:2])),
              "records": records, "env": env}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    atomic_write_json(args.out, record)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
