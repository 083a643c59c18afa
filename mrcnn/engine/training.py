"""``MaskRCNN.train()``: a custom tf.function training loop under a tf.distribute strategy.

Why not ``fit()``: Keras 3's ``fit`` breaks under MultiWorkerMirroredStrategy (keras #20585),
and matterport's chained ``train()`` calls need an epoch counter that continues. Each
``train()`` call builds a fresh optimiser and step function for its set of trainable layers,
so chained calls (heads to 2, then all to 4) never double a loss.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from mrcnn.data import inputs
from mrcnn.engine import interrupt
from mrcnn.structures.anchors import get_anchors
from mrcnn.data.data_pipeline import InputPipeline
from mrcnn.io.runs import summary_tag
from mrcnn.engine.train_graph import LOSS_NAMES, TargetSpec, compute_losses, total_loss
from mrcnn.engine.train_graph_static import compute_losses_static

log = logging.getLogger(__name__)
SUMMARY_EVERY_STEPS = 10  # TensorBoard steps/ cards: batch losses and LR every N steps


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the message names the step and the batch's images."""


def git_commit(path="."):
    """The current git commit of ``path`` or "unknown" (never raises)."""
    try:
        out = subprocess.run(["git", "-C", os.path.abspath(path), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions():
    import keras
    return {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__}


def is_chief(strategy):
    """True unless this process is a non-chief worker of a multi-worker strategy."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return True
    spec = resolver.cluster_spec().as_dict()
    if not spec:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if "chief" in spec:
        return task_type == "chief"
    return task_type in (None, "worker") and (task_id or 0) == 0


def replica_seed(seed):
    """The step's stateless seed int64 [2] for the calling replica.

    ROI sampling folds the image's index within the replica's batch into the seed, so without
    the replica id every replica would draw the same random stream. The id is global across
    workers (MultiWorkerMirroredStrategy), so a replica's seed does not depend on how replicas
    are spread over processes. One replica keeps ``seed`` unchanged.
    """
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return seed
    return tf.random.experimental.stateless_fold_in(seed, ctx.replica_id_in_sync_group)


def agree_on_overflow(grads):
    """Per-replica gradients -> the same list, all NaN on every replica if any replica's are non-finite.

    LossScaleOptimizer decides to skip a step (and halve the scale) from the gradients of this
    process's first replica *before* they are all-reduced. When only another replica overflows,
    the step is applied and the all-reduced inf/NaN poisons every weight (one process), or the
    workers disagree on the skip and stop in different collectives (multi-worker). One scalar
    all-reduce makes the decision global. Finite gradients are returned unchanged (g + 0).
    """
    ctx = tf.distribute.get_replica_context()
    present = [tf.convert_to_tensor(g) for g in grads if g is not None]
    finite = tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(g)) for g in present]))
    bad = ctx.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(finite, tf.float32))
    poison = tf.where(bad > 0, tf.constant(float("nan")), tf.constant(0.0))
    return [None if g is None else tf.convert_to_tensor(g) + tf.cast(poison, g.dtype) for g in grads]


class Trainer:
    """Owns the pipelines, step functions and logs of one ``MaskRCNN`` in training mode."""

    def __init__(self, model, strategy=None):
        self.model = model
        self.config = model.config
        self.net = model.keras_model
        self.strategy = strategy or getattr(model, "strategy", None) or tf.distribute.get_strategy()
        self._validated = {}
        self._writers = {}
        self.train_step_fn = None
        self.val_step_fn = None
        self.history = []
        # (global step, {loss name: value}) of every training step, for loss curves and tests.
        self.step_losses = []
        self.global_step = 0
        self.chief = is_chief(self.strategy)

    # ------------------------------------------------------------------ data
    def _valid_ids(self, dataset, name):
        key = id(dataset)
        if key not in self._validated:
            good, bad = inputs.validate_dataset(dataset)
            if bad:
                log.warning("%s: skipping %d of %d images with unusable annotations (see warnings above)",
                            name, len(bad), len(good) + len(bad))
            self._validated[key] = (good, bad)
        return self._validated[key][0]

    def bad_images(self, dataset):
        """{image_id: [problems]} found by the up-front validation of ``dataset``."""
        return self._validated.get(id(dataset), ([], {}))[1]

    # ------------------------------------------------------------------ steps
    def _build_steps(self, spec):
        net, config, strategy = self.net, self.config, self.strategy
        anchors = tf.constant(get_anchors(config, tuple(config.IMAGE_SHAPE[:2]), normalized=True))
        variables = list(net.trainable_variables)
        if not variables:
            raise ValueError("No trainable layers: the layers regex matched nothing.")
        replicas = strategy.num_replicas_in_sync
        scaling = getattr(config, "MIXED_PRECISION", None) == "mixed_float16"
        with strategy.scope():
            optimizer = _make_optimizer(config, loss_scale=scaling)
            optimizer.build(variables)
        self.optimizer = optimizer

        xla = bool(getattr(config, "XLA_COMPILE", False))
        forward, targets = (compute_losses_static if xla else compute_losses), TargetSpec.from_config(config)

        def replica_train(batch, seed):
            seed = replica_seed(seed)
            with tf.GradientTape() as tape:
                losses = forward(net, batch, anchors, targets, config.MEAN_PIXEL, training=True, seed=seed)
                total = total_loss(losses, config.LOSS_WEIGHTS, config.WEIGHT_DECAY, variables)
                # Per-replica means, summed over replicas by the all-reduce: divide to average.
                scaled = total / replicas
                if scaling:
                    scaled = optimizer.scale_loss(scaled)
            grads = tape.gradient(scaled, variables)
            if scaling and replicas > 1:
                grads = agree_on_overflow(grads)
            optimizer.apply_gradients(zip(grads, variables))
            losses["loss"] = total
            return losses

        def replica_val(batch, seed):
            seed = replica_seed(seed)
            losses = forward(net, batch, anchors, targets, config.MEAN_PIXEL, training=False, seed=seed)
            losses["loss"] = total_loss(losses, config.LOSS_WEIGHTS, config.WEIGHT_DECAY, variables)
            return losses

        def reduce(per_replica):
            return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in per_replica.items()}

        # autograph=False: the step has no tensor-dependent Python control flow, and converting
        # the ~160 functions it calls (losses, targets, Keras layers) took ~40% of the first trace.
        @tf.function(autograph=False, jit_compile=xla or None)
        def train_step(batch, seed):
            return reduce(strategy.run(replica_train, args=(batch, seed)))

        @tf.function(autograph=False, jit_compile=xla or None)
        def val_step(batch, seed):
            return reduce(strategy.run(replica_val, args=(batch, seed)))

        self.train_step_fn, self.val_step_fn = train_step, val_step

    def build_train_step(self, pipe):
        """Public step API (benchmarks, custom loops): build a fresh optimiser and step functions
        for the trainable layers and ``pipe``'s batches (an ``InputPipeline``); returns
        ``train_step(batch, seed int64 [2]) -> {loss name: scalar}``, one SGD update per call."""
        self._build_steps(pipe.element_spec())
        return self.train_step_fn

    def batches(self, pipe, epoch, steps):
        """``steps`` batches of ``pipe`` for ``epoch``, distributed for this trainer's strategy."""
        return self._distribute(pipe, epoch, steps)

    # ------------------------------------------------------------------ logs
    def _writer(self, name):
        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(os.path.join(self.model.log_dir, name))
        return self._writers[name]

    def _write_run_files(self):
        if not self.chief:
            return
        os.makedirs(self.model.log_dir, exist_ok=True)
        path = os.path.join(self.model.log_dir, "config.toml")
        if not os.path.exists(path):
            extra = {"git_commit": git_commit(os.path.dirname(__file__)), **package_versions()}
            self.config.to_toml(path, extra=extra)

    def _log_scalars(self, split, logs, epoch, lr=None):
        if not self.chief:
            return
        with self._writer(split).as_default():
            for k, v in logs.items():
                tf.summary.scalar(summary_tag(k), v, step=epoch)
            if lr is not None:
                tf.summary.scalar("lr", lr, step=epoch)
        self._writer(split).flush()

    def _log_step(self, values, lr):
        """Every SUMMARY_EVERY_STEPS steps: the batch losses and the LR at the global step
        (``steps/`` cards: the warm-up and the noise a per-epoch point hides)."""
        if not self.chief or (self.global_step % SUMMARY_EVERY_STEPS and self.global_step != 1):
            return
        with self._writer("train").as_default():
            for k, v in values.items():
                tf.summary.scalar("steps/" + summary_tag(k).split("/")[-1], v, step=self.global_step)
            tf.summary.scalar("steps/lr", float(lr), step=self.global_step)

    # ------------------------------------------------------------------ train
    def train(self, train_dataset, val_dataset, learning_rate, epochs, layers,
              augmentation=None, custom_callbacks=None, no_augmentation_sources=None):
        model, config = self.model, self.config
        if epochs <= model.epoch:
            log.info("Already at epoch %d >= %d: nothing to train.", model.epoch, epochs)
            return self.history
        if augmentation is None and getattr(config, "AUGMENT", False):
            from mrcnn.data.augment import Augmenter
            augmentation = Augmenter()
        with _op_determinism(config.SEED is not None and not getattr(config, "XLA_COMPILE", False)):
            return self._train(train_dataset, val_dataset, learning_rate, epochs, layers, augmentation,
                               custom_callbacks, no_augmentation_sources)

    def _train(self, train_dataset, val_dataset, learning_rate, epochs, layers, augmentation,
               custom_callbacks, no_augmentation_sources):
        model, config = self.model, self.config
        seed = int(config.SEED or 0)
        train_ids = self._valid_ids(train_dataset, "train")
        train_pipe = InputPipeline(train_dataset, config, train_ids, augmentation, no_augmentation_sources,
                                   shuffle=True, seed=seed, workers=config.DATA_WORKERS)
        val_pipe = None
        if val_dataset is not None:
            val_ids = self._valid_ids(val_dataset, "validation")
            if val_ids:
                val_pipe = InputPipeline(val_dataset, config, val_ids, shuffle=False, seed=seed)
        model.set_trainable(layers, verbose=0)
        self._build_steps(train_pipe.element_spec())
        self._write_run_files()
        steps = train_pipe.steps_per_epoch(config.STEPS_PER_EPOCH)
        val_steps = val_pipe.steps_per_epoch(config.VALIDATION_STEPS) if val_pipe else 0
        # Only the chief writes checkpoints, logs and runs callbacks (evaluation, run files).
        callbacks = list(custom_callbacks or []) if self.chief else []
        for cb in callbacks:
            cb.set_model(self.net)
            cb.on_train_begin()
        log.info("Training %s from epoch %d to %d, lr=%g, %d steps/epoch", layers, model.epoch, epochs,
                 learning_rate, steps)
        with interrupt.deferred_sigint():
            self._train_epochs(model, train_pipe, val_pipe, steps, val_steps, learning_rate, epochs, callbacks)
        for cb in callbacks:
            cb.on_train_end()
        return self.history

    def _train_epochs(self, model, train_pipe, val_pipe, steps, val_steps, learning_rate, epochs, callbacks):
        """The epoch loop of ``train``; Ctrl-C takes effect at ``interrupt.check()`` points only."""
        start_epoch = model.epoch
        if self.global_step == 0 and start_epoch > 0:
            # Resumed from a checkpoint (load_weights set the epoch): continue the warm-up and the
            # per-step sampling seeds where an uninterrupted run would be, not from step 0.
            self.global_step = start_epoch * steps
        for epoch in range(start_epoch, epochs):
            for cb in callbacks:
                cb.on_epoch_begin(epoch)
            train_logs = self._run_epoch(train_pipe, epoch, steps, learning_rate, train=True)
            logs = dict(train_logs)
            if val_pipe:
                val_logs = self._run_epoch(val_pipe, epoch, val_steps, learning_rate, train=False)
                logs.update({f"val_{k}": v for k, v in val_logs.items()})
                self._log_scalars("validation", val_logs, epoch + 1)
            self._log_scalars("train", train_logs, epoch + 1, lr=learning_rate)
            model.epoch = epoch + 1
            if self.chief:
                path = model.checkpoint_path.format(epoch=model.epoch)
                model.save_weights(path)
                logs["checkpoint"] = path
            self.history.append({"epoch": model.epoch, **{k: v for k, v in logs.items()}})
            # The checkpoint and the callbacks' run files (state.json, results.csv) of an epoch
            # are written as one unit: a Ctrl-C in between waits for them.
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs)
            interrupt.check()
            if getattr(self.net, "stop_training", False):
                log.info("A callback stopped training after epoch %d.", model.epoch)
                break

    def _distribute(self, pipe, epoch, steps):
        """The epoch's batches for this strategy: one input pipeline per worker, each reading its shard."""
        strategy = self.strategy
        if strategy.num_replicas_in_sync == 1:
            return strategy.experimental_distribute_dataset(pipe.stream(epoch, steps))
        global_batch = pipe.batch_size

        def dataset_fn(ctx):
            return pipe.stream(epoch, steps, shard=(ctx.input_pipeline_id, ctx.num_input_pipelines),
                               batch_size=ctx.get_per_replica_batch_size(global_batch))

        return strategy.distribute_datasets_from_function(dataset_fn)

    def _run_epoch(self, pipe, epoch, steps, lr, train):
        from tqdm.auto import tqdm

        dist = self._distribute(pipe, epoch, steps)
        sums = {k: 0.0 for k in LOSS_NAMES + ("loss",)}
        bar = tqdm(total=steps, desc=f"epoch {epoch + 1} {'train' if train else 'val'}",
                   leave=False, disable=not (self.chief and getattr(self.model, "progress", True) and (
                       sys.stderr.isatty() or "ipykernel" in sys.modules)))  # a log file: epoch lines only
        warmup = int(getattr(self.config, "WARMUP_STEPS", 0) or 0)
        seed0 = int(self.config.SEED or 0)
        try:
            for step, batch in enumerate(dist):
                if train:
                    rate = lr * min(1.0, (self.global_step + 1) / warmup) if warmup else lr
                    self.optimizer.learning_rate.assign(rate)
                    seed = tf.constant([seed0, self.global_step], tf.int64)
                    out = self.train_step_fn(batch, seed)
                    self.global_step += 1
                else:
                    out = self.val_step_fn(batch, tf.constant([seed0, 10 ** 6 + step], tf.int64))
                values = {k: float(v) for k, v in out.items()}
                if train:
                    self._log_step(values, rate)
                    self.step_losses.append((self.global_step, values))
                if not all(math.isfinite(v) for v in values.values()):
                    # The ids this worker actually loaded (failed images are replaced in the pipeline).
                    ids = np.concatenate([np.reshape(t.numpy(), [-1]) for t in
                                          self.strategy.experimental_local_results(batch["image_id"])])
                    refs = [f"{int(i)} ({pipe.dataset.image_reference(int(i)) or pipe.dataset.image_info[int(i)].get('path', '')})"
                            for i in ids]
                    raise NonFiniteLossError(
                        f"Non-finite loss at {'train' if train else 'validation'} step {step + 1} of epoch "
                        f"{epoch + 1}: {json.dumps(values)}. Images in the batch: {', '.join(refs)}. "
                        f"Check these annotations (python -m dataset check DIR) or lower LEARNING_RATE.")
                for k in sums:
                    sums[k] += values[k]
                bar.update(1)
                interrupt.check()
                bar.set_postfix(loss=f"{sums['loss'] / (step + 1):.3f}")
        finally:
            bar.close()
            self._note_failures(pipe)
        return {k: v / max(steps, 1) for k, v in sums.items()}

    def _note_failures(self, pipe):
        """Add images that failed to load mid-epoch to the dataset's bad images (and drop them
        from later ``train()`` calls' pipelines)."""
        if not pipe.failures:
            return
        good, bad = self._validated.get(id(pipe.dataset), (list(pipe.image_ids), {}))
        for i, message in list(pipe.failures.items()):
            bad.setdefault(i, [message])
        self._validated[id(pipe.dataset)] = ([i for i in good if i not in bad], bad)



@contextlib.contextmanager
def _op_determinism(on):
    """TensorFlow's op determinism for the duration of ``train()`` when ``on``.

    Same seed, same numbers: TensorFlow's CPU gradients otherwise differ between runs in the last
    bits (multi-threaded reductions), and the difference grows from step 2 on. Scoped, because the
    switch is process-wide (it would change later code, e.g. XLA has no deterministic MaxPool
    gradient); not with XLA_COMPILE for that reason.
    """
    from tensorflow.python.framework import config as tf_config

    turn_on = on and not tf_config.is_op_determinism_enabled()
    if turn_on:
        tf_config.enable_op_determinism()
    try:
        yield
    finally:
        if turn_on:
            tf_config.disable_op_determinism()

def _make_optimizer(config, loss_scale=False):
    """SGD with momentum and matterport's clipping.

    GRADIENT_CLIP_MODE "per_tensor" (default) is matterport's ``SGD(clipnorm=...)`` on Keras 2
    (tf.keras): each gradient tensor is scaled to norm <= GRADIENT_CLIP_NORM on its own.
    "global" scales all of them by one factor so that their joint norm is <= the limit; from
    scratch that shrinks every step (the joint norm of ~300 tensors is far above 5).
    """
    import keras

    clip = float(config.GRADIENT_CLIP_NORM) if config.GRADIENT_CLIP_NORM else None
    mode = getattr(config, "GRADIENT_CLIP_MODE", "per_tensor")
    kwargs = {"global_clipnorm": clip} if mode == "global" else {"clipnorm": clip}
    opt = keras.optimizers.SGD(learning_rate=float(config.LEARNING_RATE),
                               momentum=float(config.LEARNING_MOMENTUM), **kwargs)
    return keras.optimizers.LossScaleOptimizer(opt) if loss_scale else opt
