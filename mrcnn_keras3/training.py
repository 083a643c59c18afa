"""The training command's library: strategy, initial weights, a new or resumed run folder, the
staged schedule with Ctrl-C handling, the summary and the final evaluation.
"""
from __future__ import annotations

import os
import sys
import time

from . import weights as weights_mod
from .cli import Interrupted, UsageError, command


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


def resolve_precision(config, flag, resumed=False):
    """Set ``config.MIXED_PRECISION`` from ``train.py --mixed-precision``; returns a line for the log.

    "off": float32; "float16"/"bfloat16": that mixed policy; "auto" (the default) keeps what the
    config or a resumed run says, and otherwise picks bfloat16 on CPU hosts with AMX
    (``mrcnn.engine.runtime.auto_precision``), float32 elsewhere.
    """
    from mrcnn.evaluation.eval_loop import PRECISIONS

    if flag in PRECISIONS:   # off, float16, bfloat16: the same names as evaluate's flag
        config.update({"MIXED_PRECISION": PRECISIONS[flag]})
        return f"{'float32' if flag == 'off' else flag} (--mixed-precision {flag})"
    if resumed or config.MIXED_PRECISION:
        return f"{config.MIXED_PRECISION or 'float32'} (the {'run' if resumed else 'config'}'s)"
    from mrcnn.engine.runtime import auto_precision

    policy, why = auto_precision()
    config.update({"MIXED_PRECISION": policy})
    return why


def build_model(config, strategy_name, logs, seed):
    """The training ``MaskRCNN`` under the chosen strategy (GPU_COUNT = its replicas), seeded."""
    import keras

    from mrcnn.model import MaskRCNN

    keras.utils.set_random_seed(seed)
    strategy = make_strategy(strategy_name)
    if strategy.num_replicas_in_sync > 1:
        config.update({"GPU_COUNT": strategy.num_replicas_in_sync})
    with strategy.scope():
        return MaskRCNN(mode="training", config=config, model_dir=logs)


def load_initial_weights(model, path):
    from mrcnn.io.weights_io import HEAD_LAYERS, WeightsError

    n = weights_mod.file_num_classes(path)
    exclude = None
    if n is not None and n != model.config.NUM_CLASSES:
        exclude = HEAD_LAYERS
        print(f"Weights {os.path.basename(path)} have {n} classes, the model {model.config.NUM_CLASSES}: "
              f"loading everything except the class-specific heads {HEAD_LAYERS} (they start fresh).")
    try:
        model.load_weights(path, by_name=True, exclude=exclude)
    except WeightsError as exc:
        raise UsageError(str(exc)) from None


def start_run(model, args, config, classes, datasets, config_path, overrides, weights):
    """Load the initial weights, claim a fresh run folder; the new run's state."""
    from mrcnn.io import runs
    from mrcnn.engine.schedule import scale_schedule

    if weights:
        load_initial_weights(model, weights)
    model.set_log_dir()  # a fresh run folder, whatever the weights file was
    # Claimed atomically: a run started in the same minute gets "-2", never this folder.
    model.log_dir = runs.claim_run_dir(model.log_dir)
    model.checkpoint_path = runs.checkpoint_template(model.log_dir, runs.model_name(config))
    schedule = scale_schedule(config.TRAIN_SCHEDULE, args.epochs, config.LEARNING_RATE)
    return {"version": 1, "classes": classes, "class_names": list(datasets["train"].class_names),
            "data": os.path.abspath(args.data), "limit": args.limit, "seed": args.seed,
            "base_url": args.base_url, "images_url": args.images_url,
            "config_path": os.path.abspath(config_path), "overrides": list(overrides),
            "epochs": args.epochs, "schedule": schedule, "completed_epoch": 0, "best": None,
            "weights": args.weights, "status": "running"}


def continue_run(model, run_dir, state, config, progress):
    """Load the newest complete checkpoint of ``run_dir`` (or the run's initial weights)."""
    from mrcnn.io import runs

    ckpt, broken = runs.newest_complete_checkpoint(run_dir)
    for path, reason in broken:
        print(f"warning: skipping incomplete checkpoint {os.path.basename(path)} ({reason})", file=sys.stderr)
    if ckpt:
        if broken:
            print(f"Resuming from the newest complete checkpoint, {os.path.basename(ckpt)}.", file=sys.stderr)
        load_initial_weights(model, ckpt)  # sets model.epoch and log_dir from the name
    elif state.get("weights") not in (None, "none"):
        spec = weights_mod.check_spec(state["weights"], config, os.path.dirname(run_dir))
        load_initial_weights(model, weights_mod.resolve(spec, progress))
    model.log_dir = run_dir
    model.checkpoint_path = runs.checkpoint_template(run_dir, runs.model_name(config))
    print(f"Resuming {run_dir} at epoch {model.epoch} of {state['epochs']}")
    state["status"] = "running"
    return state


def train_and_evaluate(model, datasets, state, args):
    """Train ``model`` through ``state``'s schedule in its run folder, then score the best
    checkpoint on the test split; the exit status."""
    from mrcnn.io import runs

    runs.write_state(model.log_dir, state)
    started = time.time()
    train_stages(model, datasets, state, args)
    state["status"] = "finished"
    runs.write_state(model.log_dir, state)
    print_summary(model, state, time.time() - started)
    if datasets["test"].num_images == 0:
        print(f"warning: the test split of {args.data} has no images of {', '.join(state['classes'])}; "
              f"skipping the final evaluation (python evaluate.py --split validation scores validation).",
              file=sys.stderr)
        return 0
    from .evaluation import final_evaluation
    return final_evaluation(model.log_dir, args.logs)


def train_stages(model, datasets, state, args):
    """The staged schedule from the current epoch; Ctrl-C saves ``interrupted.h5``."""
    from mrcnn.io import runs
    from mrcnn.engine.callbacks import EvaluationCallback, RunLogger
    from mrcnn.engine.schedule import stages_from

    bars = not args.quiet and sys.stderr.isatty()  # no TTY (a log file): the epoch lines only
    callbacks = [EvaluationCallback(model, datasets["validation"], limit=args.eval_limit, progress=bars),
                 RunLogger(model, state, verbose=not args.quiet)]
    model.progress = bars
    try:
        for stage in stages_from(state["schedule"], model.epoch):
            if not args.quiet:
                print(f"\nStage: layers={stage['layers']} to epoch {stage['epochs']} at lr {stage['learning_rate']:g}")
            model.train(datasets["train"], datasets["validation"], stage["learning_rate"], stage["epochs"],
                        stage["layers"], custom_callbacks=callbacks)
    except KeyboardInterrupt:
        path = runs.interrupted_path(model.log_dir)
        model.save_weights(path)
        state["status"] = "interrupted"
        runs.write_state(model.log_dir, state)
        raise Interrupted(f"Interrupted during epoch {model.epoch + 1}. Weights saved to {path}; the last "
                          f"complete epoch is {model.epoch}. Continue with: {command('train')} --resume "
                          f"--logs {args.logs}") from None


def print_summary(model, state, seconds):
    from mrcnn.io import runs

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
        print(f"  best          epoch {b['epoch']} ({b['metric']} = {float(b['value']):.4f})")
    print(f"  TensorBoard   tensorboard --logdir {os.path.dirname(model.log_dir) or '.'}")
