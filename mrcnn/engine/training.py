"""``MaskRCNN.train()``: a custom tf.function training loop under a tf.distribute strategy.

Why not ``fit()``: Keras 3's ``fit`` breaks under MultiWorkerMirroredStrategy (keras #20585),
and matterport's chained ``train()`` calls need an epoch counter that continues. Each
``train()`` call builds a fresh optimiser and step function for its set of trainable layers,
so chained calls (heads to 2, then all to 4) never double a loss. Step construction lives in
``engine.steps``, summaries in ``engine.train_logs``, skipped images in ``engine.skipped``.
"""
from __future__ import annotations

import collections
import json
import logging
import math
import sys

import numpy as np
import tensorflow as tf

from mrcnn.data.data_pipeline import NO_USABLE_IMAGES, InputPipeline
from mrcnn.data.inputs import image_ref
from mrcnn.engine import interrupt
from mrcnn.engine.runtime import is_chief, op_determinism
from mrcnn.engine.skipped import SkippedImages
from mrcnn.engine.steps import build_step_functions
from mrcnn.engine.train_graph import LOSS_NAMES
from mrcnn.engine.train_logs import TrainLogs
from mrcnn.structures.anchors import get_anchors

log = logging.getLogger(__name__)
STEP_LOSSES_KEPT = 10_000   # default length of Trainer.step_losses (~6 MB)


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the message names the step and the batch's images."""


class NoUsableImagesError(ValueError):
    """Every image of a dataset was skipped (unusable annotations or loading errors)."""


class Trainer:
    """Owns the pipelines, step functions and logs of one ``MaskRCNN`` in training mode.

    Public step API (``train()``, benchmarks, custom loops): ``build_steps(spec)`` makes the
    optimiser and ``train_step_fn``/``val_step_fn``; ``distribute(pipe, epoch, steps)`` gives
    an epoch's batches for the strategy. ``step_losses``: (global step, {loss name: value}) of
    the last ``step_losses_kept`` training steps (a deque: a long run's memory stays bounded).
    ``bad_images(dataset)``: the images skipped so far.
    """

    def __init__(self, model, strategy=None, step_losses_kept=STEP_LOSSES_KEPT):
        self.model = model
        self.config = model.config
        self.net = model.keras_model
        self.strategy = strategy or getattr(model, "strategy", None) or tf.distribute.get_strategy()
        self.chief = is_chief(self.strategy)
        self.logs = TrainLogs(model, self.chief)
        self.skipped = SkippedImages()
        self.optimizer = self.train_step_fn = self.val_step_fn = None
        self.history = []
        self.step_losses = collections.deque(maxlen=step_losses_kept)
        self.global_step = 0

    def bad_images(self, dataset):
        """{image_id: [problems]} of the images of ``dataset`` skipped so far: samples that failed
        the checks of ``inputs.sample_problems`` or failed to load, found as they were loaded."""
        return self.skipped.of(dataset)

    # ------------------------------------------------------------------ steps
    def build_steps(self, spec=None):
        """A fresh optimiser and step functions for the trainable layers now.

        ``spec``: the batches' element spec (``InputPipeline.element_spec()``); the steps trace
        on their first call, so it is informative only. Sets and returns
        ``(train_step_fn, val_step_fn)``: ``fn(batch, seed int64 [2]) -> {loss name: scalar}``;
        the train step applies one SGD update.
        """
        config = self.config
        anchors = tf.constant(get_anchors(config, tuple(config.IMAGE_SHAPE[:2]), normalized=True))
        self.optimizer, self.train_step_fn, self.val_step_fn = build_step_functions(
            self.net, config, self.strategy, anchors)
        return self.train_step_fn, self.val_step_fn

    def build_train_step(self, pipe):
        """``build_steps`` for ``pipe``'s batches (an ``InputPipeline``); returns the train step."""
        return self.build_steps(pipe.element_spec())[0]

    def distribute(self, pipe, epoch, steps):
        """``steps`` batches of ``pipe`` for ``epoch``, distributed for this trainer's strategy:
        one input pipeline per worker, each reading its shard."""
        strategy = self.strategy
        if strategy.num_replicas_in_sync == 1:
            return strategy.experimental_distribute_dataset(pipe.stream(epoch, steps))
        global_batch = pipe.batch_size

        def dataset_fn(ctx):
            return pipe.stream(epoch, steps, shard=(ctx.input_pipeline_id, ctx.num_input_pipelines),
                               batch_size=ctx.get_per_replica_batch_size(global_batch))

        return strategy.distribute_datasets_from_function(dataset_fn)

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
        with op_determinism(config.SEED is not None and not getattr(config, "XLA_COMPILE", False)):
            return self._train(train_dataset, val_dataset, learning_rate, epochs, layers, augmentation,
                               custom_callbacks, no_augmentation_sources)

    def _pipelines(self, train_dataset, val_dataset, augmentation, no_augmentation_sources):
        """(train pipeline, validation pipeline or None) over the images not skipped before."""
        config, seed = self.config, int(self.config.SEED or 0)
        train_pipe = InputPipeline(train_dataset, config, self.skipped.usable_ids(train_dataset),
                                   augmentation, no_augmentation_sources, shuffle=True, seed=seed,
                                   workers=config.DATA_WORKERS)
        val_ids = self.skipped.usable_ids(val_dataset) if val_dataset is not None else []
        val_pipe = InputPipeline(val_dataset, config, val_ids, shuffle=False, seed=seed) if val_ids else None
        return train_pipe, val_pipe

    def _train(self, train_dataset, val_dataset, learning_rate, epochs, layers, augmentation,
               custom_callbacks, no_augmentation_sources):
        model, config = self.model, self.config
        train_pipe, val_pipe = self._pipelines(train_dataset, val_dataset, augmentation, no_augmentation_sources)
        model.set_trainable(layers, verbose=0)
        self.build_steps(train_pipe.element_spec())
        self.logs.write_run_files()
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
                val_logs = self._validate(val_pipe, epoch, val_steps, learning_rate)
                if val_logs is None:
                    val_pipe = None
                else:
                    logs.update({f"val_{k}": v for k, v in val_logs.items()})
                    self.logs.scalars("validation", val_logs, epoch + 1)
            self.logs.scalars("train", train_logs, epoch + 1, lr=learning_rate)
            model.epoch = epoch + 1
            if self.chief:
                path = model.checkpoint_path.format(epoch=model.epoch)
                model.save_weights(path)
                logs["checkpoint"] = path
            self.history.append({"epoch": model.epoch, **logs})
            # The checkpoint and the callbacks' run files (state.json, results.csv) of an epoch
            # are written as one unit: a Ctrl-C in between waits for them.
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs)
            interrupt.check()
            if getattr(self.net, "stop_training", False):
                log.info("A callback stopped training after epoch %d.", model.epoch)
                break

    def _validate(self, val_pipe, epoch, val_steps, learning_rate):
        """The validation epoch's mean losses, or None when no validation image is usable
        (then training goes on without validation, as with no validation images at all)."""
        try:
            return self._run_epoch(val_pipe, epoch, val_steps, learning_rate, train=False)
        except NoUsableImagesError as exc:
            log.warning("%s Training goes on without validation.", exc)
            return None

    def _run_epoch(self, pipe, epoch, steps, lr, train):
        """One pass of ``steps`` batches; returns {loss name: mean over the steps}."""
        from tqdm.auto import tqdm

        name = "train" if train else "validation"
        sums = {k: 0.0 for k in LOSS_NAMES + ("loss",)}
        bar = tqdm(total=steps, desc=f"epoch {epoch + 1} {'train' if train else 'val'}",
                   leave=False, disable=not (self.chief and getattr(self.model, "progress", True) and (
                       sys.stderr.isatty() or "ipykernel" in sys.modules)))  # a log file: epoch lines only
        try:
            for step, batch in enumerate(self.distribute(pipe, epoch, steps)):
                values = self._step(batch, step, lr, train)
                if not all(math.isfinite(v) for v in values.values()):
                    raise NonFiniteLossError(self._non_finite_message(pipe, batch, values, name, step, epoch))
                for k in sums:
                    sums[k] += values[k]
                bar.update(1)
                interrupt.check()
                bar.set_postfix(loss=f"{sums['loss'] / (step + 1):.3f}")
        except tf.errors.OpError as exc:
            if NO_USABLE_IMAGES not in str(exc):
                raise
            raise NoUsableImagesError(f"{name}: none of the {len(pipe.image_ids)} images is usable "
                                      f"(see the warnings above): {dict(pipe.failures)}") from None
        finally:
            bar.close()
            self.skipped.note(pipe, name)
        return {k: v / max(steps, 1) for k, v in sums.items()}

    def _step(self, batch, step, lr, train):
        """Run one train or validation step on ``batch``: {loss name: float}."""
        seed0 = int(self.config.SEED or 0)
        if not train:
            out = self.val_step_fn(batch, tf.constant([seed0, 10 ** 6 + step], tf.int64))
            return {k: float(v) for k, v in out.items()}
        warmup = int(getattr(self.config, "WARMUP_STEPS", 0) or 0)
        rate = lr * min(1.0, (self.global_step + 1) / warmup) if warmup else lr
        self.optimizer.learning_rate.assign(rate)
        out = self.train_step_fn(batch, tf.constant([seed0, self.global_step], tf.int64))
        self.global_step += 1
        values = {k: float(v) for k, v in out.items()}
        self.logs.step(self.global_step, values, rate)
        self.step_losses.append((self.global_step, values))
        return values

    def _non_finite_message(self, pipe, batch, values, name, step, epoch):
        # The ids this worker actually loaded (failed images are replaced in the pipeline).
        ids = np.concatenate([np.reshape(t.numpy(), [-1]) for t in
                              self.strategy.experimental_local_results(batch["image_id"])])
        refs = [f"{int(i)} ({image_ref(pipe.dataset, int(i))})" for i in ids]
        return (f"Non-finite loss at {name} step {step + 1} of epoch {epoch + 1}: {json.dumps(values)}. "
                f"Images in the batch: {', '.join(refs)}. "
                "Check these annotations (python -m dataset check DIR) or lower LEARNING_RATE.")
