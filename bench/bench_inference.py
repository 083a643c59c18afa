"""Inference latency per image: MaskRCNN.detect() on a random S x S image (ResNet-50, 81 classes).

Random weights give few or many detections depending on DETECTION_MIN_CONFIDENCE, and the mask
head and the post-processing (mask pasting) grow with the count, so three settings are timed per
size: "default" (DETECTION_MIN_CONFIDENCE 0.7), "dense" (0.0: fills DETECTION_MAX_INSTANCES=100)
and "few" (0.7 with DETECTION_MAX_INSTANCES=20, about a typical COCO image's count).
Besides detect() end to end, one call's parts are timed separately: mold (resize, mean), the
TF graph (backbone to masks, including the device-to-host copy) and unmold (boxes back to the
original image, masks pasted at full size).

With --torchvision (if ``import torchvision`` works) torchvision's
maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, min_size=S, max_size=S) is timed in the
same run with the same thread count, in a child process run by ``--torchvision-python`` (an
interpreter of another virtualenv) when given. torchvision is never installed by this script.

    .venv/bin/python -m bench.bench_inference [--sizes 512,1024] [--repeats 5] [--backbone resnet50]
                                             [--torchvision] [--threads N]
                                             [--torchvision-python /path/to/venv/bin/python]

Prints a table and writes bench/results/inference.json.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

from bench.env import env_info, loadavg

# torchvision's 2-core figures from the issue (seconds per image at 512 and 1024): the target is 1.5x faster.
TORCHVISION_REFERENCE = {512: 4.0, 1024: 10.5}
# setting: (DETECTION_MIN_CONFIDENCE, DETECTION_MAX_INSTANCES, torchvision box_score_thresh, detections_per_img)
SETTINGS = {"default": (0.7, 100, 0.05, 100), "dense": (0.0, 100, 0.0, 100), "few": (0.7, 20, 0.05, 20)}


def make_config(size, backbone, min_confidence, max_instances=100, precision="float32"):
    from mrcnn.config import Config

    class BenchConfig(Config):
        NAME = "bench"
        GPU_COUNT = 1
        IMAGES_PER_GPU = 1
        NUM_CLASSES = 81
        BACKBONE = backbone
        IMAGE_MIN_DIM = size
        IMAGE_MAX_DIM = size
        DETECTION_MIN_CONFIDENCE = min_confidence
        DETECTION_MAX_INSTANCES = max_instances
        MIXED_PRECISION = None if precision == "float32" else precision

    return BenchConfig()


def bench_image(size, seed):
    """The uint8 [size, size, 3] noise image every detect() bench times (the same on every side)."""
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def timed(fn, *args):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - w0, time.process_time() - c0


def detect_parts(model, image):
    """One detect() call split into mold / graph / unmold, as MaskRCNN.detect_molded_arrays does."""
    import tensorflow as tf

    from mrcnn import utils

    (molded, _, windows), t_mold, _ = timed(model.mold_inputs, [image])
    shape = molded.shape[1:3]

    def graph():
        anchors = model.get_anchors(shape)
        norm_windows = utils.norm_boxes(windows, shape).astype(np.float32)
        det, masks, counts = model.detect_graph()(tf.constant(molded), tf.constant(norm_windows),
                                                    tf.constant(anchors))
        return det.numpy(), masks.numpy(), counts.numpy()

    (det, masks, counts), t_graph, _ = timed(graph)
    n = int(counts[0])
    r, t_unmold, _ = timed(model.unmold_detections, det[0, :n], masks[:n], image.shape, molded.shape[1:],
                           windows[0])
    return {"mold": t_mold, "graph": t_graph, "unmold": t_unmold}, len(r["rois"])


def bench_ours(size, backbone, setting, repeats, seed, precision="float32"):
    import keras

    from mrcnn.model import MaskRCNN

    keras.utils.set_random_seed(seed)  # same weights for every setting of a size
    t0 = time.perf_counter()
    min_confidence, max_instances = SETTINGS[setting][:2]
    model = MaskRCNN(mode="inference", config=make_config(size, backbone, min_confidence, max_instances, precision),
                     model_dir=os.path.join("bench", "results", "logs"))
    build = time.perf_counter() - t0
    image = bench_image(size, seed)
    _, warm, _ = timed(model.detect, [image])  # traces the graph
    model.detect([image])
    walls, cpus, counts, parts = [], [], [], []
    for _ in range(repeats):
        r, wall, cpu = timed(model.detect, [image])
        walls.append(wall)
        cpus.append(cpu)
        counts.append(len(r[0]["rois"]))
    for _ in range(min(repeats, 3)):  # the split is indicative; the headline is the detect() median
        p, _ = detect_parts(model, image)
        parts.append(p)
    out = {"size": size, "setting": setting, "precision": precision, "min_confidence": min_confidence, "max_instances": max_instances,
           "build_seconds": build, "first_call_seconds": warm, "load_average_1min": os.getloadavg()[0],
           "median_seconds": float(np.median(walls)), "median_cpu_seconds": float(np.median(cpus)),
           "runs_seconds": walls, "detections": counts[0] if len(set(counts)) == 1 else counts,
           "parts_median_seconds": {k: float(np.median([p[k] for p in parts])) for k in parts[0]}}
    del model
    keras.backend.clear_session()
    return out


def bench_torchvision(size, setting, repeats, threads, precision="float32"):
    """torchvision's maskrcnn_resnet50_fpn; ``precision`` "bfloat16": under
    ``torch.autocast("cpu", torch.bfloat16)`` (its own CPU mixed precision)."""
    import contextlib

    import torch
    import torchvision

    box_score_thresh, detections_per_img = SETTINGS[setting][2:]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = torchvision.models.detection.maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, min_size=size, max_size=size,
        box_score_thresh=box_score_thresh, box_detections_per_img=detections_per_img).eval()
    image = torch.rand(3, size, size)
    walls, counts = [], []
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bfloat16"
                else contextlib.nullcontext())
    with torch.inference_mode(), autocast:
        model([image])
        for _ in range(repeats):
            w0 = time.perf_counter()
            out = model([image])
            walls.append(time.perf_counter() - w0)
            counts.append(int(out[0]["boxes"].shape[0]))
    return {"size": size, "setting": setting, "precision": precision, "box_score_thresh": box_score_thresh,
            "detections_per_img": detections_per_img, "median_seconds": float(np.median(walls)),
            "runs_seconds": walls, "detections": counts[0] if len(set(counts)) == 1 else counts,
            "torch": torch.__version__, "torchvision": torchvision.__version__,
            "threads": torch.get_num_threads()}


TORCH_CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from bench.bench_inference import bench_torchvision
print(json.dumps(bench_torchvision(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])))
"""


def bench_torchvision_child(python, size, setting, repeats, threads, precision="float32"):
    """``bench_torchvision`` in a child process of ``python`` (torch kept out of this venv)."""
    import subprocess

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([python, "-c", TORCH_CHILD, repo, str(size), setting, str(repeats), str(threads), precision],
                         capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"torchvision child under {python} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_torchvision(args, sizes, settings):
    """torchvision's rows for every size, setting and ``--torchvision-precisions``: (rows, error)."""
    threads = args.threads or os.cpu_count()
    if not args.torchvision_python:
        if not args.torchvision:
            return [], None
        try:
            import torchvision  # noqa: F401
        except ImportError as exc:
            print(f"torchvision not importable: {exc}")
            return [], f"torchvision not importable: {exc}"
    rows = []
    for size, setting, precision in ((z, s, p) for z in sizes for s in settings
                                     for p in args.torchvision_precisions.split(",")):
        if args.torchvision_python:
            rec = bench_torchvision_child(args.torchvision_python, size, setting, args.repeats, threads, precision)
        else:
            rec = bench_torchvision(size, setting, args.repeats, threads, precision)
        rows.append(rec)
        print(f"torchvision {size}px {setting:<7} {precision} {rec['median_seconds']:.3f} s/image "
              f"({rec['detections']} detections)", flush=True)
    return rows, None


def main(argv=None):
    from mrcnn.io.fsio import atomic_open

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="512,1024", help="comma-separated image sides (multiples of 64)")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs after warm-up")
    ap.add_argument("--backbone", default="resnet50")
    ap.add_argument("--settings", default="default,dense,few", help=f"subset of {','.join(SETTINGS)}")
    ap.add_argument("--torchvision", action="store_true", help="also time torchvision's maskrcnn_resnet50_fpn")
    ap.add_argument("--torchvision-python", default=None,
                    help="interpreter that can import torchvision (e.g. another venv); implies --torchvision")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads for TF and torch (0: TF default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--precisions", default="float32",
                    help="ours in these compute precisions, comma-separated: float32, mixed_bfloat16 "
                         "(CPUs with AMX / AVX-512 BF16), mixed_float16 (GPUs)")
    ap.add_argument("--torchvision-precisions", default="float32",
                    help="torchvision in float32 and/or bfloat16 (torch.autocast on CPU), comma-separated; "
                         "the tv/ours column uses torchvision's float32")
    ap.add_argument("--out", default=os.path.join("bench", "results", "inference.json"))
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    settings = [s for s in args.settings.split(",") if s]

    import tensorflow as tf
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    env = env_info(tf_intra_op_threads=args.threads or "default")

    ours, theirs = [], []
    for size, setting, precision in ((z, s, p) for z in sizes for s in settings
                                     for p in args.precisions.split(",")):
        rec = bench_ours(size, args.backbone, setting, args.repeats, args.seed, precision)
        ours.append(rec)
        p = rec["parts_median_seconds"]
        print(f"ours {size}px {setting:<7} {precision} {rec['median_seconds']:.3f} s/image "
              f"(graph {p['graph']:.3f}, unmold {p['unmold']:.3f}, mold {p['mold']:.3f}; "
              f"{rec['detections']} detections)", flush=True)
    theirs, tv_error = run_torchvision(args, sizes, settings)
    print(f"\n{args.backbone}, 81 classes, POST_NMS_ROIS_INFERENCE=1000, median of {args.repeats} after "
          f"warm-up, {env['cpu_count']} CPUs (load at start {env['loadavg']})")
    print(f"  {'size':>5} {'setting':<8} {'precision':<15} {'dets':>5} {'detect s':>9} {'cpu s':>7} {'graph':>7} {'unmold':>7} "
          f"{'mold':>7} {'target s':>9} {'tv s':>7} {'tv/ours':>8}")
    for rec in ours:
        p = rec["parts_median_seconds"]
        target = TORCHVISION_REFERENCE.get(rec["size"])
        tv = [t for t in theirs if t["size"] == rec["size"] and t["setting"] == rec["setting"]
              and t.get("precision", "float32") == "float32"]
        tv_s = tv[0]["median_seconds"] if tv else None
        rec["speedup_vs_torchvision_same_run"] = tv_s / rec["median_seconds"] if tv_s else None
        rec["speedup_vs_issue_reference"] = target / rec["median_seconds"] if target else None
        print(f"  {rec['size']:>5} {rec['setting']:<8} {rec['precision']:<15} {str(rec['detections']):>5} {rec['median_seconds']:>9.3f} "
              f"{rec['median_cpu_seconds']:>7.3f} {p['graph']:>7.3f} {p['unmold']:>7.3f} {p['mold']:>7.3f} "
              f"{(target / 1.5 if target else float('nan')):>9.2f} "
              f"{(tv_s if tv_s else float('nan')):>7.2f} "
              f"{(tv_s / rec['median_seconds'] if tv_s else float('nan')):>8.2f}")
    print("  target: 1.5x faster than torchvision's 2-core figures in the issue "
          f"({', '.join(f'{k}px {v} s' for k, v in TORCHVISION_REFERENCE.items())})")

    env["loadavg_at_end"] = loadavg()
    record = {"command": "python -m bench.bench_inference " + " ".join(argv if argv is not None else sys.argv[1:]),
              "backbone": args.backbone, "num_classes": 81, "post_nms_rois_inference": 1000,
              "repeats": args.repeats, "ours": ours, "torchvision": theirs, "torchvision_error": tv_error,
              "torchvision_reference_seconds": TORCHVISION_REFERENCE, "env": env}
    with atomic_open(args.out, "w") as f:   # makes the folder; never a half-written file
        json.dump(record, f, indent=2)
    print(f"wrote {args.out}")
    return record


if __name__ == "__main__":
    main()
