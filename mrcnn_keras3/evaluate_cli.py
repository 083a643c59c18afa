"""Evaluate a trained run on a held-out split, or run it on your own images.

    mrcnn-evaluate                         # newest run in logs/, its best checkpoint, "test" split
    mrcnn-evaluate --run logs/cat20250101T1200 --split validation --limit 50
    mrcnn-evaluate --weights path/to/mask_rcnn.h5 --config cfg.toml --data data/cat --class Cat
    mrcnn-evaluate --image photo.jpg --image photos/ --splash   # predict mode
    mrcnn-evaluate --image photo.jpg --weights coco             # COCO-pretrained, COCO's 80 classes

(``python evaluate.py ...`` from a checkout.) Evaluation writes to ``--out`` (default
``{run}/eval_{split}/``): metrics.json (COCO mask and box AP/AP50/AP75/APs/APm/APl, the per-class
table, matterport's per-image mAP@0.5), predictions.json (COCO results), ground_truth.json (COCO
dataset), pr_curve.png and overlays/*.png (ground truth beside prediction), also logged to
TensorBoard in ``{run}/eval_{split}/`` with the metrics. Predict mode writes a new folder per call,
``{run}/predict/NNN/`` (or ``--out``): {stem}.png overlays, one 0/255 mask PNG per instance
({stem}_{i:02d}_{class}_{score:.2f}.png), {stem}_splash.png with --splash, and detections.json.

Exit status: 0 done, 1 failed (network), 2 bad input (no run, missing or unreadable weights,
empty split, ...). TensorFlow is imported only once the arguments and inputs have been checked.
"""
from __future__ import annotations

import argparse
import logging
import sys

from .cli import command, run_main


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog=command("evaluate"), description="Evaluate a Mask R-CNN run (COCO mask/box AP, per-class AP, PR curves, overlays) "
                    "or, with --image, run it on your own images.",
        epilog=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", help="run folder (default: the newest run in --logs)")
    p.add_argument("--weights", help="weights .h5, or coco (matterport's COCO model with COCO's class "
                                     "names; default: the run's best.h5, else last.h5, else its newest "
                                     "checkpoint)")
    p.add_argument("--config", help="config TOML, for --weights outside a run folder "
                                    "(default: the run's config.toml)")
    p.add_argument("--logs", default="logs", help="folder holding the run folders (default: logs)")
    p.add_argument("--data", help="data folder (default: the one the run was trained on)")
    p.add_argument("--split", default="test", choices=("train", "validation", "test"),
                   help="split to evaluate (default: test)")
    p.add_argument("--class", dest="classes", action="append", metavar="NAME",
                   help="evaluate / keep only this class (repeatable; default: every class of the run)")
    p.add_argument("--limit", type=int, help="evaluate only the first N images of the split (default: all)")
    p.add_argument("--min-confidence", type=float,
                   help="drop detections below this score (default: 0.05 for evaluation, the "
                        "config's DETECTION_MIN_CONFIDENCE for --image)")
    p.add_argument("--overlays", type=int, default=8, help="ground-truth/prediction images to save (default: 8)")
    p.add_argument("--out", help="output folder (default: {run}/eval_{split}/, or a new {run}/predict/NNN/ per call)")
    p.add_argument("--no-tensorboard", action="store_true", help="do not log to TensorBoard")
    p.add_argument("--image", action="append", metavar="PATH",
                   help="predict mode: an image file or a folder of .jpg/.png (repeatable)")
    p.add_argument("--splash", action="store_true", help="predict mode: also write colour splashes")
    p.add_argument("--mixed-precision", choices=("bfloat16", "float16", "off"),
                   help="compute precision of detection (default: the run's own). bfloat16: about "
                        "2x faster on CPUs with AMX / AVX-512 BF16, slower on others; float16: "
                        "GPUs; off: float32")
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


def dispatch(args):
    from .evaluate_run import evaluate, resolve_run

    run = resolve_run(args)
    if args.image:
        from .predict import predict
        return predict(args, run)
    return evaluate(args, run)


def main(argv=None):
    from mrcnn.io.cli_logging import quiet_tensorflow_startup

    quiet_tensorflow_startup()   # before anything imports TensorFlow
    args = parse_args(argv)
    if args.max_pixels is not None:
        from mrcnn.structures.pixels import set_max_pixels
        set_max_pixels(args.max_pixels)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_main(dispatch, args)


if __name__ == "__main__":
    sys.exit(main())
