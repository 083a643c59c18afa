"""Learning benchmark: train from scratch on 128x128 shapes within a wall-clock budget, then
evaluate on held-out shapes.

Small backbone ("small": one block per stage), random initial weights, CPU. Training runs as
two ``MaskRCNN.train()`` calls (matterport style, cumulative epochs): the learning rate for
the first ``--decay-at`` fraction of the budget, then a tenth of it. A callback stops each
call once its share of the time is used (checked after each epoch of ``--steps`` steps).
Evaluation: ``detect()`` on ``--val-images`` held-out images (another seed), scored with
``mrcnn.evaluation.coco.COCOEvaluator``: COCO mask AP50 / AP (pycocotools semantics) and
matterport's per-image compute_ap at IoU 0.5 averaged over images (named as such; it is not
COCO AP).

    .venv/bin/python -m bench.bench_learning [--minutes 15] [--lr 0.02] [--steps 50]

Prints a table and writes bench/results/learning.json (plus the final weights,
bench/results/learning_weights.h5, when smaller than 20 MB).
"""
import argparse
import json
import os
import shutil
import sys
import time

import numpy as np

from bench.env import env_info

WEIGHTS_LIMIT = 20 * 2 ** 20


def make_config(args, mode):
    from mrcnn.config import Config

    class ShapesConfig(Config):
        NAME = "shapes_bench"
        BACKBONE = "small"
        NUM_CLASSES = 4
        IMAGE_MIN_DIM = 128
        IMAGE_MAX_DIM = 128
        IMAGES_PER_GPU = args.batch
        TOP_DOWN_PYRAMID_SIZE = args.fpn
        RPN_CONV_CHANNELS = args.fpn
        FPN_CLASSIF_FC_LAYERS_SIZE = 4 * args.fpn
        MASK_HEAD_CHANNELS = args.fpn
        # Shapes are 10..64 px: one anchor size per level from 8 (P2) to 128 (P6).
        RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
        RPN_TRAIN_ANCHORS_PER_IMAGE = 128
        PRE_NMS_LIMIT = 2000
        POST_NMS_ROIS_TRAINING = 500
        POST_NMS_ROIS_INFERENCE = 200
        TRAIN_ROIS_PER_IMAGE = args.rois
        MAX_GT_INSTANCES = 8
        MINI_MASK_SHAPE = (56, 56)
        DETECTION_MAX_INSTANCES = 20
        DETECTION_MIN_CONFIDENCE = args.min_confidence
        LEARNING_RATE = args.lr
        WARMUP_STEPS = args.warmup
        TRAIN_BN = True
        STEPS_PER_EPOCH = args.steps
        VALIDATION_STEPS = 0
        SEED = args.seed

    config = ShapesConfig()
    if mode == "inference":
        config.IMAGES_PER_GPU = 1
        config.derive()
    return config


def _time_budget_callback(deadline):
    import keras

    class StopAtDeadline(keras.callbacks.Callback):
        """Stops ``train()`` when another epoch (as long as the last one) would end after
        ``deadline`` (time.time()), so the budget is not exceeded."""

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.time()

        def on_epoch_end(self, epoch, logs=None):
            now = time.time()
            print(f"  epoch {epoch + 1}: loss {logs['loss']:.3f} "
                  f"(mask {logs['mrcnn_mask_loss']:.3f}), {now - self.started:.0f} s, "
                  f"{max(deadline - now, 0):.0f} s left", flush=True)
            if now + 1.25 * (now - self.started) > deadline:   # margin: step times vary with load
                self.model.stop_training = True

    return StopAtDeadline()


def train(args, model_dir, train_ds):
    import keras

    from mrcnn.model import MaskRCNN

    keras.utils.set_random_seed(args.seed)
    config = make_config(args, "training")
    model = MaskRCNN("training", config, model_dir)
    start = time.time()
    budget = args.minutes * 60
    phases = [(args.lr, start + args.decay_at * budget), (args.lr / 10, start + budget)]
    for lr, deadline in phases:
        model.keras_model.stop_training = False
        if time.time() >= deadline:
            continue
        model.train(train_ds, None, lr, model.epoch + 10 ** 6, "all",
                    custom_callbacks=[_time_budget_callback(deadline)])
    seconds = time.time() - start
    trainer = model.trainer
    return model, config, seconds, trainer.global_step, trainer.history


def evaluate(args, config_train, weights, val_ds, model_dir):
    from mrcnn.evaluation import metrics
    from mrcnn.evaluation.coco import COCOEvaluator
    from mrcnn.model import MaskRCNN
    from mrcnn.utils import extract_bboxes

    config = make_config(args, "inference")
    model = MaskRCNN("inference", config, model_dir)
    model.load_weights(weights, by_name=True)
    evaluator = COCOEvaluator(val_ds.class_names)
    per_image_ap = []
    start = time.time()
    for image_id in val_ds.image_ids:
        image = val_ds.load_image(image_id)
        masks, class_ids = val_ds.load_mask(image_id)
        boxes = extract_bboxes(masks)
        r = model.detect([image])[0]
        evaluator.add(int(image_id), {"boxes": boxes, "class_ids": class_ids, "masks": masks}, r)
        if len(class_ids):
            ap, *_ = metrics.compute_ap(boxes, class_ids, masks, r["rois"], r["class_ids"], r["scores"],
                                        r["masks"], iou_threshold=0.5)
            per_image_ap.append(ap)
    summary = evaluator.summarize(verbose=False)
    return {"coco_mask_AP50": summary["segm"]["AP50"], "coco_mask_AP": summary["segm"]["AP"],
            "coco_box_AP50": summary["bbox"]["AP50"], "coco_box_AP": summary["bbox"]["AP"],
            "matterport_mean_per_image_ap50_compute_ap": float(np.mean(per_image_ap)),
            "evaluator_matterport_mAP50": summary["matterport_mAP50"],
            "per_class": summary["per_class"], "num_images": summary["num_images"],
            "num_gt": summary["num_gt"], "num_predictions": summary["num_predictions"],
            "eval_seconds": time.time() - start}


def main(argv=None):
    from mrcnn.io.fsio import atomic_open, atomic_path

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=15.0, help="training wall-clock budget")
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--decay-at", type=float, default=0.8,
                    help="fraction of the budget after which the learning rate drops 10x")
    ap.add_argument("--warmup", type=int, default=100, help="WARMUP_STEPS")
    ap.add_argument("--batch", type=int, default=4, help="IMAGES_PER_GPU")
    ap.add_argument("--rois", type=int, default=64, help="TRAIN_ROIS_PER_IMAGE")
    ap.add_argument("--fpn", type=int, default=64, help="FPN/RPN/mask-head channels (fc = 4x)")
    ap.add_argument("--steps", type=int, default=50, help="steps per epoch (budget checked per epoch)")
    ap.add_argument("--train-images", type=int, default=5000)
    ap.add_argument("--val-images", type=int, default=100)
    ap.add_argument("--min-confidence", type=float, default=0.05,
                    help="DETECTION_MIN_CONFIDENCE at eval (low: AP ranks by score, so more detections never lower it)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--logs", default=None,
                    help="model_dir for checkpoints (default: a temp dir, deleted at the end unless --keep-logs)")
    ap.add_argument("--keep-logs", action="store_true")
    ap.add_argument("--out", default=os.path.join("bench", "results", "learning.json"))
    args = ap.parse_args(argv)

    from mrcnn.data.shapes import ShapesDataset

    if args.logs is None:
        import tempfile
        args.logs = tempfile.mkdtemp(prefix="bench_learning_")

    train_ds = ShapesDataset()
    train_ds.load_shapes(args.train_images, 128, 128, seed=args.seed)
    train_ds.prepare()
    val_ds = ShapesDataset()
    val_ds.load_shapes(args.val_images, 128, 128, seed=args.seed + 1000)
    val_ds.prepare()

    model, config, seconds, steps, history = train(args, args.logs, train_ds)
    weights = model.find_last()
    print(f"trained {steps} steps ({steps * config.BATCH_SIZE} images) in {seconds:.0f} s; "
          f"last checkpoint {weights}", flush=True)
    result = evaluate(args, config, weights, val_ds, args.logs)

    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    saved = None
    if os.path.getsize(weights) < WEIGHTS_LIMIT:
        saved = os.path.join(out_dir, "learning_weights.h5")
        with atomic_path(saved) as tmp:
            shutil.copyfile(weights, tmp)
    rows = [("training wall clock (s)", seconds), ("training steps", steps),
            ("training images seen", steps * config.BATCH_SIZE),
            ("images/s (training, incl. tracing)", steps * config.BATCH_SIZE / seconds),
            ("final epoch loss", history[-1]["loss"]),
            ("COCO mask AP50 (target >= 0.7)", result["coco_mask_AP50"]),
            ("COCO mask AP (0.5:0.95)", result["coco_mask_AP"]),
            ("COCO box AP50", result["coco_box_AP50"]),
            ("matterport mean per-image compute_ap @0.5", result["matterport_mean_per_image_ap50_compute_ap"])]
    print(f"\nshapes 128x128, small backbone from scratch, {args.val_images} held-out images")
    for name, v in rows:
        print(f"  {name:<44} {v:10.3f}" if isinstance(v, float) else f"  {name:<44} {v:10d}")
    record = {"command": "python -m bench.bench_learning " + " ".join(argv if argv is not None else sys.argv[1:]),
              "args": vars(args), "config": config.to_dict(), "train_seconds": seconds, "train_steps": steps,
              "train_images_seen": steps * config.BATCH_SIZE,
              "history": [{k: v for k, v in r.items() if k != "checkpoint"} for r in history],
              "results": result, "weights": saved, "target_mask_AP50": 0.7,
              "reached_target": result["coco_mask_AP50"] >= 0.7, "env": env_info()}
    with atomic_open(args.out, "w") as f:
        json.dump(record, f, indent=2)
    if not args.keep_logs:
        shutil.rmtree(args.logs, ignore_errors=True)
    print(f"wrote {args.out}" + (f" and {saved}" if saved else ""))
    return record


if __name__ == "__main__":
    main()
