"""Same-run learning bench: ours vs torchvision ``maskrcnn_resnet50_fpn``, from scratch, on
the same generated discs-and-rectangles set, with the same process-CPU-seconds budget.

Both sides: 128 px images, two classes, anchors 8-128 (one size per level, ratios 0.5/1/2),
32 ROIs per image, batch 4, the same training images in a seeded order, and a training budget
in process CPU seconds (all threads; so the 2 shared cores' contention does not favour either).
Each run is a child process. Modes:
  matterport   ours via matterport's API: ``model.train(..., layers="all")`` with Config
               defaults except the dataset's keys (and TRAIN_BN, ROI_INCLUDE_GT=False, SEED);
               LR 0.005 for 2/3 of the budget, then 0.001 (the issue's user script);
  recipe       ours with the CLI recipe (``--recipe-lr``, WARMUP_STEPS, 10x decay at 80%);
  torchvision  SGD 0.01, momentum 0.9, weight decay 1e-4, 50-step linear warm-up (its reference
               recipe warms up; ``bench/tv_learn_child.py``); ``--tv-backbone resnet18`` swaps
               the ResNet-50 for a ResNet-18 FPN (the fast setting).
Scores: held-out COCO mask AP50 (``mrcnn.evaluation.coco.COCOEvaluator``) and matterport's
per-image ``compute_ap`` @0.5 averaged over images; at evaluation both keep detections with
score >= 0.05, at most 20 per image.

    python -m bench.bench_learn_vs_tv --modes matterport,recipe,torchvision --seeds 1,2,3 \
        --budget-cpu 240 --torchvision-python /work/wt/tv/bin/python [--set KEY=VALUE ...]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from bench.discs_rects import CLASS_NAMES, boxes_of, load_split, write_data

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------ data (shared by both sides)
def ours_dataset(path, split):
    from mrcnn.utils import Dataset

    images, annotations = load_split(path, split)

    class Arrays(Dataset):
        def load_image(self, image_id):
            return images[image_id]

        def load_mask(self, image_id):
            ids, masks = annotations[image_id]
            return np.moveaxis(masks, 0, -1), ids.astype(np.int32)

    ds = Arrays()
    for i, name in enumerate(CLASS_NAMES[1:], start=1):
        ds.add_class("dr", i, name)
    for i in range(len(images)):
        ds.add_image("dr", image_id=i, path=None, height=images.shape[1], width=images.shape[2])
    ds.prepare()
    return ds


# ------------------------------------------------------------------ ours (child process)
def ours_config(spec, mode):
    """Config defaults, the dataset's keys, then the run's overrides (``--set``)."""
    from mrcnn.config import Config

    keys = dict(NAME="discs_rects", BACKBONE=spec["backbone"], NUM_CLASSES=len(CLASS_NAMES),
                IMAGE_MIN_DIM=128, IMAGE_MAX_DIM=128, IMAGES_PER_GPU=spec["batch"],
                RPN_ANCHOR_SCALES=(8, 16, 32, 64, 128), TRAIN_ROIS_PER_IMAGE=spec["rois"],
                MAX_GT_INSTANCES=8, STEPS_PER_EPOCH=spec["epoch_steps"], VALIDATION_STEPS=0,
                # From scratch: frozen BN at its initial statistics does not train (issue's script).
                TRAIN_BN=True, ROI_INCLUDE_GT=False, SEED=spec["seed"],
                DETECTION_MIN_CONFIDENCE=0.05, DETECTION_MAX_INSTANCES=20)
    if spec["backbone"] == "small":
        keys.update(TOP_DOWN_PYRAMID_SIZE=64, RPN_CONV_CHANNELS=64, FPN_CLASSIF_FC_LAYERS_SIZE=256,
                    MASK_HEAD_CHANNELS=64)
    keys.update(spec.get("set", {}))
    cls = type("BenchConfig", (Config,), keys)
    config = cls()
    if mode == "inference":
        config.IMAGES_PER_GPU = 1
        config.derive()
    return config


def _cpu_budget_callback(limit, cleanup_dir):
    import keras

    class StopAtCpuBudget(keras.callbacks.Callback):
        """Stops ``train()`` at the end of an epoch when another epoch (costing as much CPU as
        the last) would pass ``limit`` process CPU seconds; deletes superseded checkpoints."""

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            now = time.process_time()
            if now + (now - self.started) > limit:
                self.model.stop_training = True
            files = sorted(f for f in os.listdir(cleanup_dir) if f.endswith(".h5"))
            for f in files[:-1]:
                os.remove(os.path.join(cleanup_dir, f))

    return StopAtCpuBudget()


def run_ours(spec):
    """Train within spec["budget_cpu"] process CPU seconds, then predict the held-out split."""
    from mrcnn.model import MaskRCNN

    train_ds, val_ds = ours_dataset(spec["data"], "train"), ours_dataset(spec["data"], "val")
    config = ours_config(spec, "training")
    model = MaskRCNN("training", config, spec["logs"])
    start = time.process_time()
    budget = spec["budget_cpu"]
    for lr, until in spec["phases"]:                       # [(learning rate, budget fraction)]
        model.keras_model.stop_training = False
        if time.process_time() - start >= until * budget:
            continue
        model.train(train_ds, None, lr, model.epoch + 10 ** 6, "all",
                    custom_callbacks=[_cpu_budget_callback(start + until * budget, model.log_dir)])
    cpu = time.process_time() - start
    trainer = model.trainer   # step_losses: the last STEP_LOSSES_KEPT steps
    curve = [[s, round(sum(v[k] for k in v if k.endswith("_loss")), 4)] for s, v in trainer.step_losses]
    weights = model.find_last()
    infer = MaskRCNN("inference", ours_config(spec, "inference"), spec["logs"])
    infer.load_weights(weights, by_name=True)
    arrays = {}
    for i in val_ds.image_ids:
        r = infer.detect([val_ds.load_image(i)])[0]
        arrays.update({f"rois_{i}": r["rois"], f"class_ids_{i}": r["class_ids"], f"scores_{i}": r["scores"],
                       f"masks_{i}": np.packbits(np.moveaxis(r["masks"], -1, 0), axis=-1)})
    np.savez_compressed(spec["out"], **arrays)
    return {"steps": trainer.global_step, "train_cpu_seconds": cpu, "curve": curve, "config": config.to_dict()}


# ------------------------------------------------------------------ scoring (parent)
def score(data, predictions):
    """Held-out COCO mask AP50/AP and matterport's mean per-image compute_ap @0.5."""
    from mrcnn.evaluation import metrics
    from mrcnn.evaluation.coco import COCOEvaluator

    images, annotations = load_split(data, "val")
    p = np.load(predictions)
    evaluator, per_image = COCOEvaluator(CLASS_NAMES), []
    size = images.shape[1]
    for i, (class_ids, masks) in enumerate(annotations):
        gt = {"boxes": boxes_of(masks), "class_ids": class_ids.astype(np.int32),
              "masks": np.moveaxis(masks, 0, -1)}
        pm = np.unpackbits(p[f"masks_{i}"], axis=-1, count=size).astype(bool)
        pred = {"rois": p[f"rois_{i}"].astype(np.int32), "class_ids": p[f"class_ids_{i}"].astype(np.int32),
                "scores": p[f"scores_{i}"].astype(np.float32), "masks": np.moveaxis(pm, 0, -1)}
        evaluator.add(i, gt, pred)
        ap, *_ = metrics.compute_ap(gt["boxes"], gt["class_ids"], gt["masks"], pred["rois"],
                                    pred["class_ids"], pred["scores"], pred["masks"], iou_threshold=0.5)
        per_image.append(ap)
    s = evaluator.summarize(verbose=False)
    return {"coco_mask_AP50": s["segm"]["AP50"], "coco_mask_AP": s["segm"]["AP"],
            "coco_box_AP50": s["bbox"]["AP50"], "matterport_compute_ap50_mean": float(np.mean(per_image))}


# ------------------------------------------------------------------ orchestration
def phases(mode, args):
    if mode == "matterport":
        return [(0.005, 2 / 3), (0.001, 1.0)]
    return [(args.recipe_lr, args.decay_at), (args.recipe_lr / 10, 1.0)]


def run_job(mode, seed, args, data, tmp):
    """One (mode, seed) in a child process -> its record (scores, steps, CPU, loss curve)."""
    out = os.path.join(tmp, f"{mode}_{seed}.npz")
    spec = {"data": data, "seed": seed, "budget_cpu": args.budget_cpu, "batch": 4, "rois": 32,
            "out": out, "backbone": args.backbone, "epoch_steps": args.epoch_steps,
            "logs": os.path.join(tmp, f"logs_{mode}_{seed}"), "set": dict(args.set),
            "phases": phases(mode, args), "lr": 0.01, "tv_backbone": args.tv_backbone, "tv_warmup": 50}
    if mode == "recipe":
        spec["set"] = {"WARMUP_STEPS": args.recipe_warmup, **spec["set"]}
    if mode == "torchvision":
        cmd = [args.torchvision_python, os.path.join(REPO, "bench", "tv_learn_child.py"), json.dumps(spec)]
    else:
        cmd = [sys.executable, "-m", "bench.bench_learn_vs_tv", "--child", json.dumps(spec)]
    wall = time.time()
    # Passive OpenMP waits: spinning threads would bill torch for CPU time it does not use.
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", OMP_WAIT_POLICY="PASSIVE")
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    if proc.returncode:
        return {"mode": mode, "seed": seed, "error": proc.stderr[-3000:]}
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    record.update(mode=mode, seed=seed, wall_seconds=time.time() - wall, **score(data, out))
    print(f"  {mode:<12} seed {seed}: {record['steps']:4d} steps, {record['train_cpu_seconds']:6.0f} CPU s, "
          f"mask AP50 {record['coco_mask_AP50']:.3f}, compute_ap {record['matterport_compute_ap50_mean']:.3f}, "
          f"last loss {record['curve'][-1][-1]:.3f}", flush=True)
    return record


def summarize(records, modes):
    out = {}
    for mode in modes:
        ok = [r for r in records if r["mode"] == mode and "error" not in r]
        if not ok:
            continue
        row = {"seeds": [r["seed"] for r in ok], "steps": [r["steps"] for r in ok]}
        for key in ("coco_mask_AP50", "matterport_compute_ap50_mean", "coco_mask_AP"):
            v = [r[key] for r in ok]
            row[key] = {"median": float(np.median(v)), "min": float(min(v)), "max": float(max(v)), "all": v}
        out[mode] = row
        m = row["coco_mask_AP50"]
        print(f"{mode:<12} COCO mask AP50 median {m['median']:.3f} (min {m['min']:.3f}, max {m['max']:.3f}); "
              f"compute_ap mean median {row['matterport_compute_ap50_mean']['median']:.3f}; steps {row['steps']}")
    return out


def combine(paths, out, argv):
    """Merge result files (e.g. one per seed, run side by side) and summarise them together."""
    from mrcnn.io.fsio import atomic_write_json

    files = [json.load(open(p)) for p in paths]
    records = [r for f in files for r in f["runs"]]
    modes = list(dict.fromkeys(r["mode"] for r in records))
    record = {"command": "python -m bench.bench_learn_vs_tv " + " ".join(argv if argv is not None else sys.argv[1:]),
              "sources": [{"path": p, "command": f["command"]} for p, f in zip(paths, files)],
              "summary": summarize(records, modes), "runs": records}
    atomic_write_json(out, record)
    print(f"wrote {out}")
    return record


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--modes", default="matterport,recipe,torchvision")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--budget-cpu", type=float, default=240.0, help="training budget, process CPU seconds")
    ap.add_argument("--backbone", default="resnet50", help="ours (torchvision is always ResNet-50)")
    ap.add_argument("--tv-backbone", default="resnet50", help="resnet50 (maskrcnn_resnet50_fpn) or resnet18")
    ap.add_argument("--train-images", type=int, default=400)
    ap.add_argument("--val-images", type=int, default=40)
    ap.add_argument("--epoch-steps", type=int, default=10, help="ours: the CPU budget is checked per epoch")
    ap.add_argument("--recipe-lr", type=float, default=0.02)
    ap.add_argument("--recipe-warmup", type=int, default=50)
    ap.add_argument("--decay-at", type=float, default=0.8)
    ap.add_argument("--set", action="append", default=[], type=lambda s: (s.split("=", 1)[0], json.loads(s.split("=", 1)[1])),
                    help="ours: Config override KEY=JSON_VALUE, e.g. --set 'GRADIENT_CLIP_MODE=\"global\"'")
    ap.add_argument("--parallel", type=int, default=2, help="runs at once (each has its own CPU budget)")
    ap.add_argument("--torchvision-python", default=sys.executable)
    ap.add_argument("--out", default=os.path.join("bench", "results", "learn_vs_tv.json"))
    ap.add_argument("--combine", nargs="+", help="merge the runs of these result files into --out (seeds run apart)")
    args = ap.parse_args(argv)
    if args.combine:
        return combine(args.combine, args.out, argv)
    if args.child:
        print(json.dumps(run_ours(json.loads(args.child))))
        return None
    from mrcnn.io.fsio import atomic_write_json

    modes, seeds = args.modes.split(","), [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory(prefix="learn_vs_tv_") as tmp:
        data = os.path.join(tmp, "data.npz")
        write_data(data, args.train_images, args.val_images)
        jobs = [(m, s) for s in seeds for m in modes]
        with ThreadPoolExecutor(args.parallel) as pool:
            records = list(pool.map(lambda j: run_job(j[0], j[1], args, data, tmp), jobs))
    for r in records:
        if "error" in r:
            print(f"{r['mode']} seed {r['seed']} failed:\n{r['error']}", file=sys.stderr)
    summary = summarize(records, modes)
    record = {"command": "python -m bench.bench_learn_vs_tv " + " ".join(argv if argv is not None else sys.argv[1:]),
              "args": {k: v for k, v in vars(args).items() if k != "child"}, "summary": summary,
              "runs": records, "loadavg_at_end": os.getloadavg()}
    atomic_write_json(args.out, record)
    print(f"wrote {args.out}")
    return record


if __name__ == "__main__":
    main()
