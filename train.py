#!/usr/bin/env python
"""Train Mask R-CNN on Open Images classes: download, check, fine-tune, evaluate.

    python train.py --class Cat --epochs 20                 # COCO weights, heads then all layers
    python train.py --resume                                # continue the newest run in logs/
    tensorboard --logdir logs

Steps: download what is missing (``download.download_class``); build the train / validation /
test datasets from the official splits; check the data; build the model; load weights, swapping
the class-specific heads when the class count differs; run the staged schedule with validation
AP each epoch (best.h5 / last.h5); evaluate the best checkpoint on the test split.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
COCO_URL = os.environ.get("MRCNN_COCO_URL",
                          "https://github.com/matterport/Mask_RCNN/releases/download/v2.0/mask_rcnn_coco.h5")
COCO_SIZE = 257557808  # bytes of the released mask_rcnn_coco.h5
log = logging.getLogger("train")


class UsageError(Exception):
    """Bad input from the user: printed without a traceback, exit status 2."""


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--class", dest="classes", action="append", metavar="NAME",
                   help="Open Images class (display name in any case, or MID); repeatable")
    p.add_argument("--epochs", type=positive_int, help="total epochs (cumulative across stages)")
    p.add_argument("--config", default=os.path.join(HERE, "configs", "default.toml"), help="TOML config")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set IMAGE_MAX_DIM=512; repeatable")
    p.add_argument("--data", default="data", help="data folder (downloader layout)")
    p.add_argument("--limit", type=int, default=None, help="images per split to download and use")
    p.add_argument("--weights", default="coco", help="coco | imagenet | last | none | PATH to .h5")
    p.add_argument("--resume", action="store_true", help="continue the newest run in --logs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--logs", default="logs", help="where run folders go")
    p.add_argument("--base-url", default=None, help="Open Images annotations/masks mirror")
    p.add_argument("--images-url", default=None, help="Open Images images mirror")
    p.add_argument("--eval-limit", type=int, default=None, help="validation images scored per epoch")
    p.add_argument("--strategy", default="auto", choices=["auto", "one", "mirrored", "multiworker"])
    p.add_argument("--mixed-precision", nargs="?", const="float16", choices=["float16", "bfloat16"],
                   help="float16 (the default when given: loss scaling, GPUs) or bfloat16 (CPUs with "
                        "AVX-512 BF16/AMX, TPUs); weights stay float32")
    p.add_argument("--no-download", action="store_true", help="use --data as it is")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


# ---------------------------------------------------------------------------- config and data
def make_config(path, overrides, classes, seed):
    from mrcnn.config import Config, ConfigError

    if not os.path.isfile(path):
        raise UsageError(f"Config file not found: {path}. See configs/ for examples.")
    try:
        config = Config.from_toml(path)
        config.apply_overrides(list(overrides))
        name = "_".join(c.lower().replace(" ", "_").replace("/", "") for c in classes)
        config.update({"NAME": name, "NUM_CLASSES": 1 + len(classes), "SEED": seed})
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    return config


def download_data(args, classes):
    from download import download_class
    from download.classes import ClassResolutionError

    resolved = []
    for name in classes:
        try:
            manifest = download_class(name, out=args.data, splits=("train", "validation", "test"),
                                      limit=args.limit, seed=args.seed, base_url=args.base_url,
                                      images_url=args.images_url, progress=not args.quiet)
        except ClassResolutionError as exc:
            raise UsageError(str(exc)) from None
        resolved.append(manifest["class"])
    return resolved


def load_splits(data, classes):
    from dataset import OpenImagesDataset

    out = {}
    for split in ("train", "validation", "test"):
        ds = OpenImagesDataset()
        ds.load_openimages(data, split, class_names=classes)
        ds.prepare()
        out[split] = ds
        if ds.num_images == 0 and split != "test":
            raise UsageError(
                f"The {split} split has no usable images of {', '.join(classes)} in {os.path.abspath(data)}: "
                f"the download found none, --limit is 0, or every image failed the checks "
                f"(run: python -m dataset check {data}).")
        missing = [c for c in classes if c.lower() not in {n.lower() for n in ds.class_names}]
        if missing and split == "train":
            raise UsageError(f"No training images of {missing} in {os.path.abspath(data)}.")
    return out


def report_data(datasets):
    import numpy as np

    print("\nData")
    for split, ds in datasets.items():
        counts = np.zeros(ds.num_classes, int)
        for i in ds.image_ids:
            rec = ds.image_info[i].get("record")
            for obj in (rec.objects if rec else []):
                counts[ds._internal_class_id(obj.class_name)] += 1
        per_class = ", ".join(f"{n}: {c}" for n, c in zip(ds.class_names[1:], counts[1:]))
        errors = [p for p in getattr(ds, "problems", []) if getattr(p, "severity", "error") == "error"]
        print(f"  {split:<10} {ds.num_images:>6} images  instances {per_class}"
              + (f"  ({len(errors)} problems skipped)" if errors else ""))


# ---------------------------------------------------------------------------- weights
def coco_weights_path():
    cache = os.environ.get("MRCNN_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "mrcnn"))
    return os.path.join(cache, "mask_rcnn_coco.h5")


def resolve_weights(spec, model):
    """The weights file for --weights SPEC (None for 'none'); downloads COCO once into a cache."""
    from mrcnn import utils

    if spec == "none":
        return None
    if spec == "last":
        try:
            return model.find_last()
        except FileNotFoundError as exc:
            raise UsageError(str(exc)) from None
    if spec == "imagenet":
        try:
            return model.get_imagenet_weights()
        except Exception as exc:  # noqa: BLE001 - network errors of any kind
            raise UsageError(f"Could not fetch ImageNet weights ({exc}). Pass a local file with --weights PATH "
                             f"or train from scratch with --weights none.") from None
    if spec == "coco":
        path = coco_weights_path()
        if not (os.path.isfile(path) and os.path.getsize(path) == COCO_SIZE):
            print(f"Downloading COCO weights to {path} (once) ...")
            try:
                utils.download_trained_weights(path, verbose=0, url=COCO_URL)
            except Exception as exc:  # noqa: BLE001
                raise UsageError(
                    f"Could not download mask_rcnn_coco.h5 from {COCO_URL}: {exc}\nWith no network, pass a "
                    f"local copy: --weights /path/to/mask_rcnn_coco.h5 (or --weights none to train from "
                    f"scratch).") from None
        return path
    if not os.path.isfile(spec):
        raise UsageError(f"Weights file not found: {spec}. Pass coco, imagenet, last, none or an existing .h5 path.")
    return spec


def file_num_classes(path):
    """Class count of the heads stored in a weights file (None if it has no heads)."""
    import h5py

    from mrcnn.weights_io import read_list_attr

    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f and "layer_names" not in f.attrs else f
            if "mrcnn_class_logits" not in root:
                return None
            g = root["mrcnn_class_logits"]
            names = read_list_attr(g, "weight_names")
            return int(g[names[0]].shape[-1]) if names else None
    except OSError:
        raise UsageError(f"{path} is not an HDF5 weights file. Pass a Keras .h5 such as mask_rcnn_coco.h5.") from None


def load_initial_weights(model, path):
    from mrcnn.weights_io import HEAD_LAYERS, WeightsError

    n = file_num_classes(path)
    exclude = None
    if n is not None and n != model.config.NUM_CLASSES:
        exclude = HEAD_LAYERS
        print(f"Weights {os.path.basename(path)} have {n} classes, the model {model.config.NUM_CLASSES}: "
              f"loading everything except the class-specific heads {HEAD_LAYERS} (they start fresh).")
    try:
        model.load_weights(path, by_name=True, exclude=exclude)
    except WeightsError as exc:
        raise UsageError(str(exc)) from None


# ---------------------------------------------------------------------------- strategy
def make_strategy(name):
    import tensorflow as tf

    if name == "auto":
        if os.environ.get("TF_CONFIG"):
            name = "multiworker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            return tf.distribute.get_strategy()
    if name == "one":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.MultiWorkerMirroredStrategy()


# ---------------------------------------------------------------------------- main
def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run(args):
    from mrcnn import runs
    from mrcnn.schedule import scale_schedule, stages_from

    state = None
    if args.resume:
        try:
            run_dir = runs.newest_run(args.logs)
        except FileNotFoundError as exc:
            raise UsageError(f"--resume: {exc}") from None
        state = runs.read_state(run_dir)
        args.data, args.limit, args.seed = state["data"], state["limit"], state["seed"]
        args.base_url, args.images_url = state.get("base_url"), state.get("images_url")
        classes = state["classes"]
        if args.epochs and args.epochs != state["epochs"]:
            state["schedule"] = scale_schedule(state["schedule"], args.epochs, state["schedule"][0]["learning_rate"])
            state["epochs"] = args.epochs
        config_path, overrides = os.path.join(run_dir, "config.toml"), []
    else:
        if not args.classes:
            raise UsageError("--class NAME is required (e.g. --class Cat), or --resume to continue a run.")
        if not args.epochs:
            raise UsageError("--epochs N is required (N >= 1).")
        if args.weights not in ("coco", "imagenet", "last", "none"):
            # A mistyped path fails now, not after the download and the model build.
            file_num_classes(resolve_weights(args.weights, None))
        if not args.no_download:
            classes = download_data(args, args.classes)
        else:
            classes = args.classes
        config_path, overrides = args.config, args.overrides

    config = make_config(config_path, overrides, classes, args.seed)
    if args.mixed_precision:
        config.update({"MIXED_PRECISION": "mixed_" + args.mixed_precision})
    datasets = load_splits(args.data, classes)
    report_data(datasets)

    import tensorflow as tf
    import keras

    from mrcnn.callbacks import EvaluationCallback, RunLogger
    from mrcnn.model import MaskRCNN

    keras.utils.set_random_seed(args.seed)
    strategy = make_strategy(args.strategy)
    if strategy.num_replicas_in_sync > 1:
        config.update({"GPU_COUNT": strategy.num_replicas_in_sync})
    with strategy.scope():
        model = MaskRCNN(mode="training", config=config, model_dir=args.logs)

    if state is None:
        weights = resolve_weights(args.weights, model)
        if weights:
            load_initial_weights(model, weights)
        model.set_log_dir()  # a fresh run folder, whatever the weights file was
        schedule = scale_schedule(config.TRAIN_SCHEDULE, args.epochs, config.LEARNING_RATE)
        state = {"version": 1, "classes": classes, "class_names": list(datasets["train"].class_names),
                 "data": os.path.abspath(args.data), "limit": args.limit, "seed": args.seed,
                 "base_url": args.base_url, "images_url": args.images_url,
                 "config_path": os.path.abspath(config_path), "overrides": list(overrides),
                 "epochs": args.epochs, "schedule": schedule, "completed_epoch": 0, "best": None,
                 "weights": args.weights, "status": "running"}
        os.makedirs(model.log_dir, exist_ok=True)
    else:
        ckpts = runs.checkpoints(run_dir)
        if ckpts:
            load_initial_weights(model, ckpts[-1])  # sets model.epoch and log_dir from the name
        elif state.get("weights") not in (None, "none"):
            load_initial_weights(model, resolve_weights(state["weights"], model))
        model.log_dir = run_dir
        model.checkpoint_path = os.path.join(run_dir, f"mask_rcnn_{config.NAME}_{{epoch:04d}}.h5")
        print(f"Resuming {run_dir} at epoch {model.epoch} of {state['epochs']}")
        state["status"] = "running"
    runs.write_state(model.log_dir, state)

    callbacks = [EvaluationCallback(model, datasets["validation"], limit=args.eval_limit, progress=not args.quiet),
                 RunLogger(model, state)]
    started = time.time()
    try:
        for stage in stages_from(state["schedule"], model.epoch):
            print(f"\nStage: layers={stage['layers']} to epoch {stage['epochs']} at lr {stage['learning_rate']:g}")
            model.train(datasets["train"], datasets["validation"], stage["learning_rate"], stage["epochs"],
                        stage["layers"], custom_callbacks=callbacks)
    except KeyboardInterrupt:
        path = os.path.join(model.log_dir, "interrupted.h5")
        model.save_weights(path)
        state["status"] = "interrupted"
        runs.write_state(model.log_dir, state)
        print(f"\nInterrupted during epoch {model.epoch + 1}. Weights saved to {path}; the last complete epoch is "
              f"{model.epoch}. Continue with: python train.py --resume --logs {args.logs}", file=sys.stderr)
        return 130
    state["status"] = "finished"
    runs.write_state(model.log_dir, state)
    print_summary(model, state, time.time() - started)
    if datasets["test"].num_images == 0:
        print(f"warning: the test split of {args.data} has no images of {', '.join(classes)}; "
              f"skipping the final evaluation (python evaluate.py --split validation scores validation).",
              file=sys.stderr)
        return 0
    return final_evaluation(model.log_dir, args)


def print_summary(model, state, seconds):
    from mrcnn import runs

    rows = runs.read_results(model.log_dir)
    print("\nSummary")
    print(f"  run           {model.log_dir}")
    print(f"  epochs        {state['completed_epoch']} in {seconds / 60:.1f} min")
    if rows:
        last = rows[-1]
        print(f"  last losses   train {float(last.get('loss') or 'nan'):.3f}  "
              f"validation {float(last.get('val_loss') or 'nan'):.3f}")
    if state.get("best"):
        b = state["best"]
        print(f"  best          epoch {b['epoch']} ({b['metric']} = {b['value']})")
    print(f"  TensorBoard   tensorboard --logdir {os.path.dirname(model.log_dir) or '.'}")


def final_evaluation(run_dir, args):
    """Score the best checkpoint on the held-out test split (through evaluate.py's code path)."""
    import evaluate

    return evaluate.main(["--run", run_dir, "--split", "test", "--logs", args.logs])


if __name__ == "__main__":
    sys.exit(main())
