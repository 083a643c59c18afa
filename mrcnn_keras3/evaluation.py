"""Scoring a trained run on a split of an Open Images folder: what the evaluate command does and
what the training command does at the end (the best checkpoint on the test split).

Writes to ``out`` (default ``{run}/eval_{split}/``): metrics.json, predictions.json (COCO
results), ground_truth.json (COCO dataset), pr_curve.png, overlays/*.png, and the metrics and
overlays to TensorBoard in ``{run}/eval_{split}/``.
"""
from __future__ import annotations

import json
import os
import sys

from .cli import UsageError


def _norm(name):
    return " ".join(str(name).replace("_", " ").lower().split())


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


def evaluate_split(run, data, split="test", classes=None, limit=None, min_confidence=None, overlays=8,
                   out=None, tensorboard=True, model_dir="logs", precision=None):
    """Score ``run`` (a ``runs.Run``) on ``split`` of the ``data`` folder; 0 (the exit status).

    ``classes``: the run's classes to score (default all); ``min_confidence`` default 0.05;
    ``precision``: see ``eval_loop.inference_config`` (None: the run's)."""
    from mrcnn.evaluation import eval_loop
    from mrcnn.io import runs

    state, weights = run.state, run.weights
    data = data or state.get("data")
    if not data:
        raise UsageError("No data folder: the run's state.json does not name one; pass --data DIR.")
    min_conf = eval_loop.EVAL_MIN_CONFIDENCE if min_confidence is None else min_confidence
    config = eval_loop.run_config(run, min_conf, precision)
    if state.get("class_names") or state.get("classes") or classes:
        fallback = sorted(classes or [], key=str.lower)
        names = model_class_names(state, config, fallback)
        wanted = select_classes(names, classes)
        ds = load_split(data, split, wanted)
    else:  # no state.json and no --class: the data's classes, numbered as training numbers them
        ds = load_split(data, split, None)
        fallback = [c["name"] for c in ds.class_info[1:]]
        names = model_class_names(state, config, fallback)
        wanted = names[1:]
    out = out or os.path.join(run.dir or os.path.dirname(os.path.abspath(weights)), f"eval_{split}")
    print(f"Evaluating {weights} on {min(ds.num_images, limit or ds.num_images)} "
          f"'{split}' images of {data} ({', '.join(wanted)})")
    model, _ = eval_loop.open_run(run, config, fallback_names=fallback, model_dir=model_dir,
                                  hint=" Pass one of the run's checkpoints.")
    metrics, evaluator, images = _score(model, names, ds, out, limit, overlays,
                                        runs.read_config(run.config_path).DETECTION_MIN_CONFIDENCE)
    epoch = runs.weights_epoch(weights, state)
    result = dict(metrics, weights=os.path.abspath(weights), split=split,
                  run=os.path.abspath(run.dir) if run.dir else None, classes=wanted,
                  data=os.path.abspath(data), limit=limit, min_confidence=min_conf, epoch=epoch,
                  mixed_precision=config.MIXED_PRECISION)
    runs.atomic_write_text(os.path.join(out, "metrics.json"), json.dumps(result, indent=2))
    evaluator.write_results(os.path.join(out, "predictions.json"))
    evaluator.write_ground_truth(os.path.join(out, "ground_truth.json"))
    evaluator.plot_pr_curves(os.path.join(out, "pr_curve.png"))
    if tensorboard:
        event_dir = os.path.join(run.dir, f"eval_{split}") if run.dir else out
        log_tensorboard(event_dir, eval_loop.flat_metrics(metrics), images, epoch)
    print(evaluator.format_table(metrics))
    print(f"\nWrote metrics.json, predictions.json, ground_truth.json, pr_curve.png and "
          f"{len(images)} overlays to {out}")
    return 0


def _score(model, names, ds, out, limit, overlays, display_threshold):
    """COCO metrics of ``model`` on ``ds``: (metrics, evaluator, overlay paths)."""
    from mrcnn.evaluation import eval_loop

    # Dataset ids are 1..K over the evaluated classes; the model's follow the run's class list.
    ds_ids = {_norm(c["name"]): c["id"] for c in ds.class_info[1:]}
    id_map = {i: ds_ids[_norm(n)] for i, n in enumerate(names) if i and _norm(n) in ds_ids}
    identity = len(id_map) == len(names) - 1 and all(k == v for k, v in id_map.items())
    detector = model if identity else ClassFilter(model, id_map)
    overlay_dir = os.path.join(out, "overlays")
    for name in os.listdir(overlay_dir) if os.path.isdir(overlay_dir) else []:
        if name.endswith(".png"):  # overlays of an earlier evaluation
            os.remove(os.path.join(overlay_dir, name))
    return eval_loop.evaluate_dataset(
        detector, ds, limit=limit, overlay_dir=overlay_dir if overlays else None,
        overlay_count=overlays, progress=sys.stderr.isatty(), display_threshold=display_threshold)


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


def final_evaluation(run_dir, logs="logs"):
    """Score a run's best checkpoint on the held-out test split (what the evaluate command does
    with ``--run RUN --split test``)."""
    from mrcnn.io import runs

    return evaluate_split(runs.resolve_run(run_dir, logs=logs), None, "test", model_dir=logs)
