"""The training and validation step functions of ``Trainer`` (tf.function, under a tf.distribute strategy).

Each ``Trainer.build_steps`` call makes a fresh optimiser and fresh step functions for the
trainable variables at that moment, so chained ``train()`` calls (heads, then all) never share
an optimiser state or a trace.
"""
from __future__ import annotations

import tensorflow as tf

from mrcnn.engine.train_graph import TargetSpec, compute_losses, total_loss
from mrcnn.engine.train_graph_static import compute_losses_static


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


def make_optimizer(config, loss_scale=False):
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


def build_step_functions(net, config, strategy, anchors):
    """(optimizer, train_step, val_step) for ``net``'s trainable variables now.

    anchors: normalised anchors float32 [A, 4] (y1, x1, y2, x2) of the training image shape.
    ``train_step(batch, seed int64 [2])`` applies one update and returns {loss name: scalar}
    (the losses before the update, averaged over replicas); ``val_step`` the same without update.
    """
    variables = list(net.trainable_variables)
    if not variables:
        raise ValueError("No trainable layers: the layers regex matched nothing.")
    scaling = getattr(config, "MIXED_PRECISION", None) == "mixed_float16"
    with strategy.scope():
        optimizer = make_optimizer(config, loss_scale=scaling)
        optimizer.build(variables)
    xla = bool(getattr(config, "XLA_COMPILE", False))
    losses_of = compute_losses_static if xla else compute_losses
    targets, mean_pixel = TargetSpec.from_config(config), config.MEAN_PIXEL

    def forward(batch, seed, training):
        losses = losses_of(net, batch, anchors, targets, mean_pixel, training=training, seed=replica_seed(seed))
        return losses, total_loss(losses, config.LOSS_WEIGHTS, config.WEIGHT_DECAY, variables)

    replica_train = _replica_train(forward, strategy, optimizer, variables, scaling)

    def replica_val(batch, seed):
        losses, total = forward(batch, seed, training=False)
        losses["loss"] = total
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

    return optimizer, train_step, val_step


def _replica_train(forward, strategy, optimizer, variables, scaling):
    """One replica's forward, backward and update: (batch, seed) -> {loss name: scalar}.
    ``forward(batch, seed, training)`` -> ({loss name: scalar}, total loss)."""
    replicas = strategy.num_replicas_in_sync

    def replica_train(batch, seed):
        with tf.GradientTape() as tape:
            losses, total = forward(batch, seed, training=True)
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

    return replica_train
