"""Predict mode of the evaluation command: ``--image`` files or folders -> overlays, one mask
PNG per instance, ``detections.json``."""
from __future__ import annotations

import json
import os
import re
import sys

from .cli import UsageError
from .evaluation import ClassFilter, model_class_names, select_classes

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


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

    from mrcnn.io.fsio import atomic_open

    with atomic_open(path, "wb", durable=False) as f:
        Image.fromarray(array).save(f, format="PNG")


def read_input_image(path, skipped):
    """RGB uint8 [H, W, 3] as displayed, exactly as Dataset.load_image reads it (EXIF orientation
    applied, 16-bit scaled with a warning); None after adding to ``skipped`` why it cannot be used
    (unreadable, or over the pixel limit: a decompression bomb)."""
    from mrcnn.structures.pixels import ImageTooLarge, read_rgb

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


def output_dir(args, run, weights, coco):
    """``--out``, else a new numbered folder per call, ``{run}/predict/NNN/`` (``./predict/NNN/``
    for COCO weights; beside the weights file for one outside a run): never overwritten."""
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        return args.out
    base = os.path.join(run or (os.getcwd() if coco else os.path.dirname(os.path.abspath(weights))), "predict")
    os.makedirs(base, exist_ok=True)
    taken = [int(n) for n in os.listdir(base) if n.isdigit()]
    k = max(taken, default=0) + 1
    while True:  # mkdir is atomic: two calls at once get two folders
        try:
            path = os.path.join(base, f"{k:03d}")
            os.mkdir(path)
            return path
        except FileExistsError:
            k += 1


def _crop_png(path):
    """Drop the figure's blank margins from a saved overlay."""
    import numpy as np
    from PIL import Image

    from mrcnn.io.runs import crop_to_content

    with Image.open(path) as im:
        pixels = np.asarray(im.convert("RGB"))
    _save_png(np.ascontiguousarray(crop_to_content(pixels)), path)


def class_colors(n):
    """One fixed colour per class id (the same class has the same colour in every picture)."""
    from mrcnn import visualize
    return visualize.random_colors(max(n, 1), seed=0)


def predict_one(detector, image, stem, names, out, splash, written):
    """Overlay, masks and (optionally) splash of one image; its detections for detections.json."""
    import contextlib
    import io

    from mrcnn import visualize

    r = detector.detect([image])[0]
    for name in set(os.listdir(out)) - written:  # masks of an earlier prediction of this image
        if re.fullmatch(re.escape(stem) + r"_\d{2}_.+_\d\.\d\d\.png", name):
            os.remove(os.path.join(out, name))
    h, w = image.shape[:2]
    palette = class_colors(len(names))
    with contextlib.redirect_stdout(io.StringIO()):  # matterport's "*** No instances to display ***"
        visualize.display_instances(
            image, r["rois"], r["masks"], r["class_ids"], names, r["scores"], title=stem,
            figsize=(10, 10 * h / max(w, 1)), colors=[palette[int(c)] for c in r["class_ids"]],
            save_path=os.path.join(out, f"{stem}.png"))
    _crop_png(os.path.join(out, f"{stem}.png"))
    dets = []
    for i, (box, cid, score) in enumerate(zip(r["rois"], r["class_ids"], r["scores"])):
        label = re.sub(r"[^A-Za-z0-9.-]+", "_", names[cid]).strip("_").lower() or "class"
        mask_file = f"{stem}_{i:02d}_{label}_{score:.2f}.png"
        _save_png(r["masks"][..., i].astype("uint8") * 255, os.path.join(out, mask_file))
        written.add(mask_file)
        dets.append({"class": names[cid], "class_id": int(cid), "score": float(score),
                     "box": [int(v) for v in box], "mask": mask_file})
    if splash:
        _save_png(visualize.color_splash(image, r["masks"]), os.path.join(out, f"{stem}_splash.png"))
    return dets


def plural(n, word):
    return f"{n} {word}" + ("" if n == 1 else "s")


def predict(args, run):
    """Predict mode on a ``runs.Run``: overlays, masks and detections.json in a new folder; 0."""
    from mrcnn.evaluation.eval_loop import open_run, run_config
    from mrcnn.io import runs

    images = list_images(args.image)
    weights = run.weights
    config = run_config(run, args.min_confidence, args.mixed_precision)
    fallback = sorted(args.classes, key=str.lower) if args.classes else None
    names = model_class_names(run.state, config, fallback)
    keep = select_classes(names, args.classes)
    out = output_dir(args, run.dir, weights, run.state.get("coco", False))
    model, _ = open_run(run, config, fallback_names=fallback, model_dir=args.logs,
                        hint=" Pass one of the run's checkpoints.")
    id_map = {i: i for i, n in enumerate(names) if n in keep}
    detector = ClassFilter(model, id_map) if len(id_map) < len(names) - 1 else model
    print(f"Predicting with {weights} (min confidence {config.DETECTION_MIN_CONFIDENCE:g}) "
          f"on {plural(len(images), 'image')} -> {out}")
    report, skipped, stems, written = [], [], set(), set()
    for path in images:
        image = read_input_image(path, skipped)
        if image is None:
            continue
        stem = os.path.splitext(os.path.basename(path))[0]
        while stem in stems:  # a.jpg and a.png in one call
            stem += "_"
        stems.add(stem)
        dets = predict_one(detector, image, stem, names, out, args.splash, written)
        report.append({"image": path, "height": image.shape[0], "width": image.shape[1],
                       "overlay": f"{stem}.png", "detections": dets})
        summary = ", ".join(f"{d['class']} {d['score']:.2f}" for d in dets[:8])
        print(f"{os.path.basename(path)}: {plural(len(dets), 'instance')}{': ' + summary if dets else ''}"
              f"{' ...' if len(dets) > 8 else ''}")
    runs.atomic_write_text(os.path.join(out, "detections.json"), json.dumps(
        {"weights": os.path.abspath(weights), "classes": keep,
         "box_format": "[y1, x1, y2, x2] in pixels of the image as displayed (EXIF orientation applied); "
                       "y2, x2 exclusive (matterport's rois)",
         "min_confidence": float(config.DETECTION_MIN_CONFIDENCE), "images": report,
         "skipped": skipped}, indent=2))
    if skipped:
        print(f"Skipped {plural(len(skipped), 'unreadable image')}: "
              f"{', '.join(os.path.basename(s['image']) for s in skipped)}", file=sys.stderr)
    if not report:
        raise UsageError("None of the images could be read.")
    print(f"Wrote {plural(len(report), 'overlay')} and their masks to {out}")
    return 0
