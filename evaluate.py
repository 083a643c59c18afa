"""Evaluate a trained run on a held-out split, or run it on your own images.

    python evaluate.py                         # newest run in logs/, its best checkpoint, "test" split
    python evaluate.py --run logs/cat20250101T1200 --split validation --limit 50
    python evaluate.py --weights path/to/mask_rcnn.h5 --config cfg.toml --data data/cat --class Cat
    python evaluate.py --image photo.jpg --image photos/ --splash   # predict mode

Evaluation writes to ``--out`` (default ``{run}/eval_{split}/``): metrics.json (COCO mask and box
AP/AP50/AP75/APs/APm/APl, the per-class table, matterport's per-image mAP@0.5), predictions.json
(COCO results), ground_truth.json (COCO dataset), pr_curve.png and overlays/*.png (ground truth
beside prediction), also logged to TensorBoard in ``{run}/eval_{split}/`` with the metrics.
Predict mode writes to ``{run}/predict/``: {stem}.png overlays, one 0/255 mask PNG per instance
({stem}_{i:02d}_{class}_{score:.2f}.png), {stem}_splash.png with --splash, and detections.json.

Exit status: 0 done, 2 bad input (no run, missing or unreadable weights, empty split, ...).
TensorFlow is imported only once the arguments and inputs have been checked.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class UsageError(Exception):
    """Bad command-line input: shown as one message without a traceback, exit status 2."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Evaluate a Mask R-CNN run (COCO mask/box AP, per-class AP, PR curves, overlays) "
                    "or, with --image, run it on your own images.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--run", help="run folder (default: the newest run in --logs)")
    p.add_argument("--weights", help="weights .h5 (default: the run's best.h5, else last.h5, else "
                                     "its newest checkpoint)")
    p.add_argument("--config", help="config TOML, for --weights outside a run folder "
                                    "(default: the run's config.toml)")
    p.add_argument("--logs", default="logs", help="folder holding the run folders")
    p.add_argument("--data", help="data folder (default: the one the run was trained on)")
    p.add_argument("--split", default="test", choices=("train", "validation", "test"))
    p.add_argument("--class", dest="classes", action="append", metavar="NAME",
                   help="evaluate / keep only this class (repeatable; default: every class of the run)")
    p.add_argument("--limit", type=int, help="evaluate only the first N images of the split")
    p.add_argument("--min-confidence", type=float,
                   help="drop detections below this score (default: 0.05 for evaluation, the "
                        "config's DETECTION_MIN_CONFIDENCE for --image)")
    p.add_argument("--overlays", type=int, default=8, help="ground-truth/prediction images to save")
    p.add_argument("--out", help="output folder (default: {run}/eval_{split}/ or {run}/predict/)")
    p.add_argument("--no-tensorboard", action="store_true", help="do not log to TensorBoard")
    p.add_argument("--image", action="append", metavar="PATH",
                   help="predict mode: an image file or a folder of .jpg/.png (repeatable)")
    p.add_argument("--splash", action="store_true", help="predict mode: also write colour splashes")
    p.add_argument("--max-pixels", type=int, metavar="N",
                   help="skip images over N pixels (decompression-bomb guard; default 178956970 "
                        "or $MRCNN_MAX_PIXELS)")
    args = p.parse_args(argv)
    for bad, msg in ((args.limit is not None and args.limit < 1, "--limit must be at least 1"),
                     (args.min_confidence is not None and not 0 <= args.min_confidence <= 1,
                      "--min-confidence must be in [0, 1]"), (args.overlays < 0, "--overlays must be >= 0")):
        if bad:
            p.error(msg)
    return args


# ----------------------------------------------------------------------------- inputs
def _norm(name):
    return " ".join(str(name).replace("_", " ").lower().split())


def resolve_run(args):
    """(run folder or None, state dict, config path, weights path) from the flags."""
    from mrcnn import runs

    run = args.run
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


def check_weights_file(path):
    """Fail fast (before TensorFlow loads) on a missing or non-HDF5 weights file."""
    import h5py

    if not os.path.isfile(path):
        raise UsageError(f"Weights file not found: {path}. Pass the path of an existing .h5 file "
                         f"(a run's best.h5 / last.h5 / mask_rcnn_*.h5, or mask_rcnn_coco.h5).")
    if not h5py.is_hdf5(path):
        raise UsageError(f"{path} is not an HDF5 weights file. Pass a Keras .h5 file such as "
                         f"mask_rcnn_coco.h5 or one of the run's checkpoints.")


def load_config(path, min_confidence):
    from mrcnn import eval_loop
    from mrcnn.config import Config, ConfigError

    try:
        return eval_loop.inference_config(Config.from_toml(path), min_confidence)
    except ConfigError as e:
        raise UsageError(str(e)) from None


def model_class_names(state, config, fallback=None):
    """["BG", ...] in the model's class-id order: from state.json, else ``fallback`` (class names
    sorted as training numbers them), else generic "class i" names."""
    from mrcnn import runs

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
    from dataset.openimages import OpenImagesDataset

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
    from mrcnn.eval_loop import load_inference_model
    from mrcnn.weights_io import WeightsError

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


# ----------------------------------------------------------------------------- evaluation
def evaluate(args, run, state, config_path, weights):
    from mrcnn import eval_loop, runs

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
        overlay_count=args.overlays, progress=sys.stderr.isatty())

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

    writer = tf.summary.create_file_writer(event_dir)
    with writer.as_default():
        for key, value in scalars.items():
            tf.summary.scalar(key, value, step=step)
        for i, path in enumerate(image_paths):
            with Image.open(path) as im:
                tf.summary.image(f"predictions/{i}", np.asarray(im.convert("RGB"))[None], step=step)
    writer.close()


# ----------------------------------------------------------------------------- predict mode
def list_images(paths):
    """Image files from files and (non-recursively) folders, in order, without duplicates."""
    found = []
    for path in paths:
        if os.path.isdir(path):
            found += [os.path.join(path, n) for n in sorted(os.listdir(path))
                      if n.lower().endswith(IMAGE_SUFFIXES) and os.path.isfile(os.path.join(path, n))]
        elif os.path.isfile(path):
            found.append(path)
        else:
            raise UsageError(f"--image {path}: no such file or folder.")
    unique = list(dict.fromkeys(os.path.abspath(p) for p in found))
    if not unique:
        raise UsageError(f"No .jpg/.jpeg/.png images in {', '.join(paths)}.")
    return unique


def _save_png(array, path):
    """Write a uint8 array as PNG atomically."""
    from PIL import Image

    from download.fsutil import atomic_open

    with atomic_open(path, "wb", durable=False) as f:
        Image.fromarray(array).save(f, format="PNG")


def read_input_image(path, skipped):
    """RGB uint8 [H, W, 3] as displayed, exactly as Dataset.load_image reads it (EXIF orientation
    applied, 16-bit scaled with a warning); None after adding to ``skipped`` why it cannot be used
    (unreadable, or over the pixel limit: a decompression bomb)."""
    from dataset.pixels import ImageTooLarge, read_rgb

    try:
        image, notes = read_rgb(path)
    except ImageTooLarge as e:
        skipped.append({"image": path, "error": str(e)})
        print(f"skipped {path}: {e}", file=sys.stderr)
        return None
    except (OSError, ValueError) as e:
        skipped.append({"image": path, "error": str(e)})
        print(f"skipped {path}: cannot read it as an image ({e})", file=sys.stderr)
        return None
    for note in notes:  # e.g. a 16-bit PNG scaled to 8 bits
        print(f"warning: {note}", file=sys.stderr)
    return image


def predict(args, run, state, config_path, weights):
    from mrcnn import runs, visualize

    images = list_images(args.image)
    config = load_config(config_path, args.min_confidence)
    fallback = sorted(args.classes, key=str.lower) if args.classes else None
    names = model_class_names(state, config, fallback)
    keep = select_classes(names, args.classes)
    out = args.out or os.path.join(run or os.path.dirname(os.path.abspath(weights)), "predict")
    os.makedirs(out, exist_ok=True)
    model = build_model(config, weights, args.logs)
    id_map = {i: i for i, n in enumerate(names) if n in keep}
    detector = ClassFilter(model, id_map) if len(id_map) < len(names) - 1 else model
    print(f"Predicting with {weights} (min confidence {config.DETECTION_MIN_CONFIDENCE:g}) "
          f"on {len(images)} images -> {out}")
    report, skipped, stems, written = [], [], set(), set()
    for path in images:
        image = read_input_image(path, skipped)
        if image is None:
            continue
        stem = os.path.splitext(os.path.basename(path))[0]
        while stem in stems:  # a.jpg and a.png in one call
            stem += "_"
        stems.add(stem)
        r = detector.detect([image])[0]
        for name in set(os.listdir(out)) - written:  # masks of an earlier prediction of this image
            if re.fullmatch(re.escape(stem) + r"_\d{2}_.+_\d\.\d\d\.png", name):
                os.remove(os.path.join(out, name))
        h, w = image.shape[:2]
        visualize.display_instances(
            image, r["rois"], r["masks"], r["class_ids"], names, r["scores"], title=stem,
            figsize=(10, 10 * h / max(w, 1)), save_path=os.path.join(out, f"{stem}.png"))
        dets = []
        for i, (box, cid, score) in enumerate(zip(r["rois"], r["class_ids"], r["scores"])):
            label = re.sub(r"[^A-Za-z0-9.-]+", "_", names[cid]).strip("_").lower() or "class"
            mask_file = f"{stem}_{i:02d}_{label}_{score:.2f}.png"
            _save_png(r["masks"][..., i].astype("uint8") * 255, os.path.join(out, mask_file))
            written.add(mask_file)
            dets.append({"class": names[cid], "class_id": int(cid), "score": float(score),
                         "box": [int(v) for v in box], "mask": mask_file})
        if args.splash:
            _save_png(visualize.color_splash(image, r["masks"]), os.path.join(out, f"{stem}_splash.png"))
        report.append({"image": path, "height": h, "width": w, "overlay": f"{stem}.png",
                       "detections": dets})
        summary = ", ".join(f"{d['class']} {d['score']:.2f}" for d in dets[:8])
        print(f"{os.path.basename(path)}: {len(dets)} instances{': ' + summary if dets else ''}"
              f"{' ...' if len(dets) > 8 else ''}")
    runs.atomic_write_text(os.path.join(out, "detections.json"), json.dumps(
        {"weights": os.path.abspath(weights), "classes": keep,
         "min_confidence": float(config.DETECTION_MIN_CONFIDENCE), "images": report,
         "skipped": skipped}, indent=2))
    if skipped:
        print(f"Skipped {len(skipped)} unreadable image(s): "
              f"{', '.join(os.path.basename(s['image']) for s in skipped)}", file=sys.stderr)
    if not report:
        raise UsageError("None of the images could be read.")
    print(f"Wrote {len(report)} overlays and their masks to {out}")
    return 0


def main(argv=None):
    from mrcnn.cli_logging import quiet_tensorflow_startup

    quiet_tensorflow_startup()   # before anything imports TensorFlow
    args = parse_args(argv)
    if args.max_pixels is not None:
        from dataset.pixels import set_max_pixels
        set_max_pixels(args.max_pixels)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        run, state, config_path, weights = resolve_run(args)
        if args.image:
            return predict(args, run, state, config_path, weights)
        return evaluate(args, run, state, config_path, weights)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
