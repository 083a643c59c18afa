"""Export a trained run as a TensorFlow SavedModel (uint8 image in; boxes, classes, scores, masks out).

    mrcnn-export logs/cat20250101T1200 exported/cat          # run folder: best.h5 + config.toml
    mrcnn-export path/to/mask_rcnn.h5 exported/m --config cfg.toml --min-confidence 0.5

(``python -m mrcnn_keras3.export_cli ...`` from a checkout.) The signature is described in
``mrcnn.io.export``. Exit status: 0 done, 2 bad input (``mrcnn_keras3.cli``'s policy).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from .cli import run_main


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="mrcnn-export", description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="RUN_OR_WEIGHTS",
                   help="run folder (its best.h5 and config.toml) or a weights .h5")
    p.add_argument("out_dir", metavar="OUT_DIR", help="SavedModel folder to write")
    p.add_argument("--config", help="config TOML (default: config.toml of the run / beside the .h5)")
    p.add_argument("--min-confidence", type=float,
                   help="drop detections below this score (default: the config's DETECTION_MIN_CONFIDENCE)")
    p.add_argument("--mixed-precision", choices=("off", "bfloat16", "float16"), default="off",
                   help="compute precision of the exported graph (default off: float32, whatever the "
                        "run trained in; bfloat16 pays on CPUs with AMX, float16 on GPUs)")
    args = p.parse_args(argv)
    if args.min_confidence is not None and not 0 <= args.min_confidence <= 1:
        p.error("--min-confidence must be in [0, 1]")
    return args


def export(args):
    """Resolve the run, check the config and the target (no TensorFlow yet), then export."""
    from mrcnn.evaluation.eval_loop import open_run
    from mrcnn.io import export as export_lib
    from mrcnn.io.runs import resolve_run

    run = resolve_run(args.source, config=args.config)
    config = export_lib.load_config(run.config_path, args.min_confidence, args.mixed_precision)
    export_lib.check_target(os.path.abspath(args.out_dir))
    model, names = open_run(run, config)
    out = export_lib.export_saved_model(model, args.out_dir, names)
    print(f"Exported {run.weights} ({config.NUM_CLASSES - 1} classes: {', '.join(names[1:])}) to {out}\n"
          f"  load: fn = tf.saved_model.load({out!r}).signatures['serving_default']\n"
          f"        out = fn(image=tf.constant(uint8_rgb_image))  # boxes, classes, scores, masks")
    return 0


def main(argv=None):
    from mrcnn.io.cli_logging import quiet_tensorflow_startup

    quiet_tensorflow_startup()   # before anything imports TensorFlow
    # TensorFlow's INFO lines would name the temporary folder; keep warnings only
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    return run_main(export, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
