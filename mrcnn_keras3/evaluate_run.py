"""The evaluation command's library: which run, weights and config; COCO AP on a split.

Writes to ``--out`` (default ``{run}/eval_{split}/``): metrics.json, predictions.json (COCO
results), ground_truth.json (COCO dataset), pr_curve.png, overlays/*.png, and the metrics and
overlays to TensorBoard in ``{run}/eval_{split}/``.
"""
from __future__ import annotations

import json
import os
import re
import sys

from . import coco
from .cli import UsageError
from .weights import check_weights_file


def _norm(name):
    return " ".join(str(name).replace("_", " ").lower().split())


def resolve_run(args):
    """(run folder or None, state dict, config path, weights path) from the flags."""
    from mrcnn.io import runs

    run = args.run
    if args.weights == "coco":
        return resolve_coco(args, None)
    if args.weights is not None:
        check_weights_file(args.weights)
    if run is None and args.weights is None:
        try:
            run = runs.newest_run(args.logs)
        except FileNotFoundError as e:
            raise UsageError(f"{e}, or pass --run DIR or --weights PATH --config TOML.") from None
    if run is None:  # --weights alone: its own folder may be the run
        folder = os.path.dirname(os.path.abspath(args.weights))
        if os.path.isfile(os.path.join(folder, "config.toml")):
            run = folder
        elif coco.coco_mode(args.weights, args.weights, None):
            return resolve_coco(args, args.weights)
        elif not args.config:
            raise UsageError(f"--weights {args.weights} is not inside a run folder (no config.toml "
                             f"beside it): pass --config TOML or --run DIR to say how the model is built.")
    if run is not None and not os.path.isdir(run):
        raise UsageError(f"Run folder {run} does not exist. Runs are in {os.path.abspath(args.logs)}.")
    config = args.config or os.path.join(run, "config.toml")
    if not os.path.isfile(config):
        raise UsageError(f"Config file {config} not found: the run folder is incomplete; "
                         f"pass --config TOML.")
    try:
        state = runs.read_run_state(run)
    except ValueError as e:
        raise UsageError(str(e)) from None
    weights = args.weights
    if weights is None:
        try:
            weights = runs.best_weights(run)
        except FileNotFoundError as e:
            raise UsageError(f"{e} Train it further, or pass --weights PATH.") from None
    check_weights_file(weights)
    return run, state, config, weights


def resolve_coco(args, weights):
    """matterport's COCO model: its config (or ``--config``) and COCO's 81 class names;
    ``--weights coco`` downloads mask_rcnn_coco.h5 once (resumable)."""
    from .data import resolve_config_path
    from .weights import fetch_coco

    config = resolve_config_path(args.config) if args.config else coco.config_path()
    weights = weights or fetch_coco(progress=True)
    return None, {"class_names": list(coco.CLASS_NAMES), "coco": True}, config, weights


def display_threshold(path):
    """The config's DETECTION_MIN_CONFIDENCE (what overlays draw; AP scores every detection)."""
    from mrcnn.config import Config
    return float(Config.from_toml(path).DETECTION_MIN_CONFIDENCE)


def load_config(path, min_confidence):
    from mrcnn.evaluation import eval_loop
    from mrcnn.config import Config, ConfigError

    try:
        return eval_loop.inference_config(Config.from_toml(path), min_confidence)
    except ConfigError as e:
        raise UsageError(str(e)) from None


def model_class_names(state, config, fallback=None):
    """["BG", ...] in the model's class-id order: from state.json, else ``fallback`` (class names
    sorted as training numbers them), else generic "class i" names."""
    from mrcnn.io import runs

    try:
        return runs.class_names(state, config.NUM_CLASSES, fallback)
    except runs.ClassCountError as e:
        raise UsageError(f"The model has NUM_CLASSES={config.NUM_CLASSES} (background included) but "
                         f"{len(e.names)} class names are known ({e.names}); pass every class the "
                         f"model was trained on with --class.") from None


def select_classes(model_names, wanted):
    """The run's classes to keep (spelled as in the run); all when ``wanted`` is empty."""
    if not wanted:
        return list(model_names[1:])
    by_norm = {_norm(n): n for n in model_names[1:]}
    missing = [w for w in wanted if _norm(w) not in by_norm]
    if missing:
        raise UsageError(f"Class {', '.join(missing)} is not one the model was trained on: "
                         f"{', '.join(model_names[1:])}.")
    return sorted({by_norm[_norm(w)] for w in wanted}, key=str.lower)


def load_split(data, split, classes):
    """The prepared OpenImagesDataset of ``split``; ``classes`` None = every class in the data."""
    from .dataset.openimages import OpenImagesDataset

    ds = OpenImagesDataset()
    try:
        ds.load_openimages(data, split, class_names=classes)
    except FileNotFoundError as e:
        raise UsageError(f"{e} (pass --data DIR)") from None
    ds.prepare()
    if ds.num_images == 0:
        raise UsageError(f"The '{split}' split of {os.path.abspath(data)} has no images"
                         f"{' of ' + ', '.join(classes) if classes else ''}: download it "
                         f"(python -m download --class NAME --splits {split}), pick another --split, "
                         f"or pass --data DIR.")
    return ds


class ClassFilter:
    """Wraps ``MaskRCNN.detect``: keeps the selected classes and renumbers their ids.

    ``id_map``: {model class id: output class id}; detections of other classes are dropped.
    """

    def __init__(self, model, id_map):
        self.model, self.id_map = model, dict(id_map)

    def detect(self, images, verbose=0):
        import numpy as np

        out = []
        for r in self.model.detect(images, verbose=verbose):
            keep = np.isin(r["class_ids"], list(self.id_map))
            out.append({"rois": r["rois"][keep], "scores": r["scores"][keep],
                        "class_ids": np.array([self.id_map[int(c)] for c in r["class_ids"][keep]],
                                              np.int32),
                        "masks": r["masks"][..., keep]})
        return out


def build_model(config, weights, logs):
    """The inference MaskRCNN with ``weights`` loaded by name."""
    from mrcnn.evaluation.eval_loop import load_inference_model
    from mrcnn.io.weights_io import WeightsError

    try:
        return load_inference_model(config, weights, logs, hint=" Pass one of the run's checkpoints.")
    except WeightsError as e:
        raise UsageError(str(e)) from None


def weights_epoch(weights, state):
    """Epoch of a checkpoint (for TensorBoard steps): from the file name, else state.json."""
    m = re.search(r"_(\d{4})\.h5$", os.path.basename(weights))
    if m:
        return int(m.group(1))
    if os.path.basename(weights) == "best.h5" and state.get("best"):
        return int(state["best"].get("epoch") or 0)
    return int(state.get("completed_epoch") or 0)


def evaluate(args, run, state, config_path, weights):
    from mrcnn.evaluation import eval_loop
    from mrcnn.io import runs

    data = args.data or state.get("data")
    if not data:
        raise UsageError("No data folder: the run's state.json does not name one; pass --data DIR.")
    min_conf = eval_loop.EVAL_MIN_CONFIDENCE if args.min_confidence is None else args.min_confidence
    config = load_config(config_path, min_conf)
    if state.get("class_names") or state.get("classes") or args.classes:
        names = model_class_names(state, config, sorted(args.classes or [], key=str.lower))
        classes = select_classes(names, args.classes)
        ds = load_split(data, args.split, classes)
    else:  # no state.json and no --class: the data's classes, numbered as training numbers them
        ds = load_split(data, args.split, None)
        names = model_class_names(state, config, [c["name"] for c in ds.class_info[1:]])
        classes = names[1:]
    out = args.out or os.path.join(run or os.path.dirname(os.path.abspath(weights)),
                                   f"eval_{args.split}")
    print(f"Evaluating {weights} on {min(ds.num_images, args.limit or ds.num_images)} "
          f"'{args.split}' images of {data} ({', '.join(classes)})")

    model = build_model(config, weights, args.logs)
    # Dataset ids are 1..K over the evaluated classes; the model's follow the run's class list.
    ds_ids = {_norm(c["name"]): c["id"] for c in ds.class_info[1:]}
    id_map = {i: ds_ids[_norm(n)] for i, n in enumerate(names) if i and _norm(n) in ds_ids}
    identity = len(id_map) == len(names) - 1 and all(k == v for k, v in id_map.items())
    detector = model if identity else ClassFilter(model, id_map)
    overlay_dir = os.path.join(out, "overlays")
    for name in os.listdir(overlay_dir) if os.path.isdir(overlay_dir) else []:
        if name.endswith(".png"):  # overlays of an earlier evaluation
            os.remove(os.path.join(overlay_dir, name))
    metrics, evaluator, overlays = eval_loop.evaluate_dataset(
        detector, ds, limit=args.limit, overlay_dir=overlay_dir if args.overlays else None,
        overlay_count=args.overlays, progress=sys.stderr.isatty(),
        display_threshold=display_threshold(config_path))

    result = dict(metrics)
    epoch = weights_epoch(weights, state)
    result.update(weights=os.path.abspath(weights), split=args.split,
                  run=os.path.abspath(run) if run else None, classes=classes,
                  data=os.path.abspath(data), limit=args.limit, min_confidence=min_conf, epoch=epoch)
    runs.atomic_write_text(os.path.join(out, "metrics.json"), json.dumps(result, indent=2))
    evaluator.write_results(os.path.join(out, "predictions.json"))
    evaluator.write_ground_truth(os.path.join(out, "ground_truth.json"))
    evaluator.plot_pr_curves(os.path.join(out, "pr_curve.png"))
    if not args.no_tensorboard:
        event_dir = os.path.join(run, f"eval_{args.split}") if run else out
        log_tensorboard(event_dir, eval_loop.flat_metrics(metrics), overlays, epoch)
    print(evaluator.format_table(metrics))
    print(f"\nWrote metrics.json, predictions.json, ground_truth.json, pr_curve.png and "
          f"{len(overlays)} overlays to {out}")
    return 0


def log_tensorboard(event_dir, scalars, image_paths, step):
    """Metrics as scalars and the overlay PNGs as images in ``event_dir`` at ``step``."""
    import numpy as np
    import tensorflow as tf
    from PIL import Image

    from mrcnn.io.runs import crop_to_content, summary_tag

    writer = tf.summary.create_file_writer(event_dir)
    with writer.as_default():
        for key, value in scalars.items():
            if value >= 0:  # COCO's -1: no objects of that size, not a score
                tf.summary.scalar(summary_tag(key), value, step=step)
        for i, path in enumerate(image_paths):
            with Image.open(path) as im:
                tf.summary.image(f"predictions/{i}", crop_to_content(np.asarray(im.convert("RGB")))[None],
                                 step=step)
    writer.close()


def final_evaluation(run_dir, logs):
    """Score a run's best checkpoint on the held-out test split (what the evaluate command does
    with ``--run RUN --split test``)."""
    import argparse

    args = argparse.Namespace(**dict(EVAL_DEFAULTS, run=run_dir, logs=logs, split="test"))
    return evaluate(args, *resolve_run(args))


# The evaluate command's defaults, for callers that skip its parser.
EVAL_DEFAULTS = dict(run=None, weights=None, config=None, logs="logs", data=None, split="test", classes=None,
                     limit=None, min_confidence=None, overlays=8, out=None, no_tensorboard=False, image=None,
                     splash=False, max_pixels=None)
