"""The training command: check everything, download, build, train in stages, evaluate.

Order matters for a new user: every check that needs no network (config, ``--set``, a weights
path) runs first, then the class names (the class lists: the first network access), then the
COCO weights, and only then the data download, the model build and training.
"""
from __future__ import annotations

import os

from . import weights as weights_mod
from .cli import UsageError
from .data import (check_sources, download_data, load_splits, make_config, report_data,
                   resolve_classes)


def default_config():
    from . import config_dir
    return os.path.join(config_dir(), "default.toml")


def prepare_fresh(args):
    """(classes, config path, overrides, weights file or None) of a new run, all checked."""
    if not args.classes:
        raise UsageError("--class NAME is required (e.g. --class Cat), or --resume to continue a run.")
    if not args.epochs:
        raise UsageError("--epochs N is required (N >= 1).")
    config_path, overrides = args.config or default_config(), args.overrides
    config = make_config(config_path, overrides, args.classes, args.seed)
    spec = args.weights if args.weights == "last" else weights_mod.check_spec(args.weights, config, args.logs)
    if args.no_download:
        classes = args.classes
        check_sources(args, classes)
    else:
        classes = resolve_classes(args)  # network: the one-line offline error comes from here
    config = make_config(config_path, overrides, classes, args.seed)
    if spec == "last":
        spec = weights_mod.check_spec("last", config, args.logs)
    weights = weights_mod.resolve(spec, progress=not args.quiet)
    if not args.no_download:
        download_data(args, classes)
    return classes, config_path, overrides, weights


def prepare_resume(args):
    """(run folder, state) of ``--resume``, with args set from the run's state."""
    from mrcnn.io import runs
    from mrcnn.engine.schedule import scale_schedule

    try:
        run_dir = runs.newest_run(args.logs)
    except FileNotFoundError as exc:
        raise UsageError(f"--resume: {exc}") from None
    refused = runs.config_change_refusal(run_dir, args.config, args.overrides)
    if refused:
        raise UsageError(refused)
    try:
        state = runs.read_state(run_dir)
    except ValueError as exc:
        raise UsageError(f"--resume: {exc}") from None
    args.data, args.limit, args.seed = state["data"], state["limit"], state["seed"]
    args.base_url, args.images_url = state.get("base_url"), state.get("images_url")
    if args.epochs and args.epochs != state["epochs"]:
        state["schedule"] = scale_schedule(state["schedule"], args.epochs, state["schedule"][0]["learning_rate"])
        state["epochs"] = args.epochs
    return run_dir, state


def run(args):
    """The whole command; returns the exit status."""
    run_dir = state = None
    if args.resume:
        run_dir, state = prepare_resume(args)
        classes, config_path, overrides, weights = state["classes"], os.path.join(run_dir, "config.toml"), [], None
    else:
        classes, config_path, overrides, weights = prepare_fresh(args)
    config = make_config(config_path, overrides, classes, args.seed)
    datasets = load_splits(args.data, classes, args.limit, args.seed)
    if not args.quiet:
        report_data(datasets)

    from . import training

    precision = training.resolve_precision(config, args.mixed_precision, resumed=state is not None)
    if not args.quiet:
        print(f"Precision: {precision}")

    model = training.build_model(config, args.strategy, args.logs, args.seed)
    if state is None:
        state = training.start_run(model, args, config, classes, datasets, config_path, overrides, weights)
        from .train_batch import write_train_batch
        write_train_batch(datasets["train"], config, model.log_dir, seed=args.seed)
    else:
        state = training.continue_run(model, run_dir, state, config, not args.quiet)
    return training.train_and_evaluate(model, datasets, state, args)
