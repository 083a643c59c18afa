"""The evaluation command's flags -> a run (``mrcnn.io.runs.resolve_run``, or matterport's COCO
model) -> ``evaluation.evaluate_split`` or ``predict.predict``."""
from __future__ import annotations

import os

from . import coco
from .cli import UsageError
from .evaluation import ClassFilter, model_class_names, select_classes  # noqa: F401  (evaluate.py's names)
from .weights import check_weights_file


def resolve_run(args):
    """The ``runs.Run`` the flags name: ``--run``, ``--weights`` (its folder when config.toml is
    beside it; COCO's names for an 81-class file outside any run), else the newest run in --logs."""
    from mrcnn.io import runs

    if args.weights == "coco":
        return resolve_coco(args, None)
    run = args.run
    if args.weights is not None:
        check_weights_file(args.weights)
        folder = os.path.dirname(os.path.abspath(args.weights))
        if run is None and not os.path.isfile(runs.config_path(folder)) \
                and coco.coco_mode(args.weights, args.weights, None):
            return resolve_coco(args, args.weights)
    elif run is None:
        try:
            run = runs.newest_run(args.logs)
        except runs.MissingError as e:
            raise UsageError(f"{e}, or pass --run DIR or --weights PATH --config TOML.") from None
    return runs.resolve_run(run, args.weights, args.config, args.logs)


def resolve_coco(args, weights):
    """matterport's COCO model: its config (or ``--config``) and COCO's 81 class names;
    ``--weights coco`` downloads mask_rcnn_coco.h5 once (resumable)."""
    from mrcnn.io.runs import Run

    from .data import resolve_config_path
    from .weights import fetch_coco

    config = resolve_config_path(args.config) if args.config else coco.config_path()
    weights = weights or fetch_coco(progress=True)
    return Run(None, weights, config, {"class_names": list(coco.CLASS_NAMES), "coco": True})


def load_config(path, min_confidence):
    """The inference config of a config TOML (``min_confidence`` None: the config's own)."""
    from mrcnn.evaluation import eval_loop
    from mrcnn.io import runs

    return eval_loop.inference_config(runs.read_config(path), min_confidence)


def evaluate(args, run):
    from .evaluation import evaluate_split

    return evaluate_split(run, args.data, args.split, args.classes, args.limit, args.min_confidence,
                          args.overlays, args.out, not args.no_tensorboard, args.logs,
                          precision=args.mixed_precision)
