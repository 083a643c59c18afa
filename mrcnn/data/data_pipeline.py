"""tf.data input pipeline fed by any ``mrcnn.utils.Dataset``.

Python-side loading (``load_image``/``load_mask``, resize, RPN targets) runs in a parallel
map of ``tf.numpy_function`` calls, or with ``workers=N`` in N forked processes
(``mrcnn.data.process_loader``: no GIL between samples); batches are prefetched so the training
step never waits on Python. Every sample draws its randomness from ``(seed, epoch, position)``, so the
stream is deterministic under a seed whatever the thread scheduling.
"""
from __future__ import annotations

import logging
import threading

import numpy as np
import tensorflow as tf

from mrcnn.structures.anchors import get_anchors
from mrcnn.data.inputs import UnusableSample, image_ref, prepare_sample
from mrcnn.data.rpn_targets import AnchorIndex

log = logging.getLogger(__name__)

# Starts the error raised when every image of the pipeline was skipped (the trainer looks for it).
NO_USABLE_IMAGES = "None of the pipeline's images could be used"
_KEYS = ("image", "active_class_ids", "rpn_match", "rpn_bbox", "gt_class_ids", "gt_boxes", "gt_masks")


class InputPipeline:
    """Batches of training samples for one dataset.

    ``image_ids``: the ids to draw from. ``stream(epoch, steps)`` gives a ``tf.data.Dataset``
    of ``steps`` batches of dicts (keys ``_KEYS`` plus ``image_id``). Each sample is checked as
    it is loaded (``inputs.sample_problems``); a bad one is replaced, warned about and recorded
    in ``failures`` (see ``load_sample``), so batches keep their size and the stream its seed.
    """

    def __init__(self, dataset, config, image_ids, augmentation=None, no_augmentation_sources=None,
                 shuffle=True, seed=0, num_parallel_calls=None, batch_size=None, workers=0):
        self.dataset = dataset
        self.config = config
        self.image_ids = np.asarray(list(image_ids), np.int64)
        self._position_of = {int(i): k for k, i in enumerate(self.image_ids)}
        self.failures = {}   # image_id -> message, for images skipped (see load_sample)
        self._lock = threading.Lock()
        self.augmentation = augmentation
        self.no_aug_sources = set(no_augmentation_sources or [])
        self.shuffle = shuffle
        self.seed = int(seed or 0)
        self.batch_size = int(batch_size or config.BATCH_SIZE)
        self.num_parallel_calls = num_parallel_calls or tf.data.AUTOTUNE
        self.workers = int(workers or 0)
        shape = tuple(int(v) for v in config.IMAGE_SHAPE[:2])
        self.image_shape = shape
        self.anchor_index = AnchorIndex(get_anchors(config, shape, normalized=False))
        self.num_anchors = self.anchor_index.num
        mh, mw = config.MINI_MASK_SHAPE if config.USE_MINI_MASK else shape
        g = config.MAX_GT_INSTANCES
        self.specs = {
            "image": ((shape[0], shape[1], config.IMAGE_CHANNEL_COUNT), tf.uint8),
            "active_class_ids": ((config.NUM_CLASSES,), tf.int32),
            "rpn_match": ((self.num_anchors,), tf.int32),
            "rpn_bbox": ((config.RPN_TRAIN_ANCHORS_PER_IMAGE, 4), tf.float32),
            "gt_class_ids": ((g,), tf.int32),
            "gt_boxes": ((g, 4), tf.float32),
            "gt_masks": ((mh, mw, g), tf.bool),
        }
        if len(self.image_ids) == 0:
            raise ValueError("The training pipeline got no usable images (all were empty or invalid).")

    def steps_per_epoch(self, configured=None):
        """``configured`` (STEPS_PER_EPOCH) when set, else one pass: ceil(images / batch)."""
        if configured:
            return int(configured)
        return max(1, int(np.ceil(len(self.image_ids) / self.batch_size)))

    def epoch_order(self, epoch, steps):
        """The image ids of ``steps`` batches: seeded permutations, concatenated as needed."""
        need = steps * self.batch_size
        order, have, k = [], 0, 0
        while have < need:
            ids = self.image_ids
            if self.shuffle:
                ids = np.random.default_rng([self.seed, epoch, k]).permutation(ids)
            order.append(ids)
            have += len(ids)
            k += 1
        return np.concatenate(order)[:need]

    def load_sample(self, image_id, epoch, position):
        """The sample at (epoch, position): a tuple of the ``_KEYS`` arrays plus the id loaded.

        An image whose loading fails (unreadable file, NaN pixels) or whose annotations would
        break training (empty masks, masks of another size, class ids out of range, counts) is
        recorded in ``failures`` and replaced by the next usable id of ``image_ids``, with the
        failed slot's randomness: one bad file neither ends training mid-epoch nor changes the
        batch shapes. Replacements are deterministic.
        """
        start = self._position_of[int(image_id)]
        n = len(self.image_ids)
        for k in range(n):
            candidate = int(self.image_ids[(start + k) % n])
            if candidate in self.failures:
                continue
            rng = np.random.default_rng([self.seed, int(epoch), int(position)])
            source = self.dataset.image_info[candidate].get("source")
            aug = None if source in self.no_aug_sources else self.augmentation
            try:
                sample = prepare_sample(self.dataset, self.config, candidate, self.anchor_index,
                                        augmentation=aug, rng=rng)
            except Exception as exc:  # noqa: BLE001 - any loader error: skip and report the image
                self._record_failure(candidate, exc)
                continue
            return tuple(sample[k] for k in _KEYS) + (np.int32(candidate),)
        raise RuntimeError(f"{NO_USABLE_IMAGES}; problems: {self.failures}")

    def _record_failure(self, image_id, exc):
        with self._lock:
            if image_id in self.failures:
                return
            if isinstance(exc, UnusableSample):
                self.failures[image_id] = "; ".join(exc.problems)
            else:
                self.failures[image_id] = f"loading failed: {exc!r}"
            message = self.failures[image_id]
        ref = image_ref(self.dataset, image_id)
        log.warning("Skipping image %d (%s) in training: %s. Fix or remove it "
                    "(python -m dataset check DIR).", image_id, ref, message)

    def stream(self, epoch, steps, shard=None, batch_size=None):
        """tf.data.Dataset of ``steps`` batches for ``epoch`` (prefetched).

        ``shard=(index, count)`` keeps every count-th image of the epoch order for one input
        pipeline of a multi-worker strategy; ``batch_size`` is then the per-replica batch.
        Positions stay global, so every image gets the same randomness however it is sharded.
        """
        order = self.epoch_order(epoch, steps)
        positions = np.arange(len(order), dtype=np.int64)
        if shard is not None:
            index, count = shard
            order, positions = order[index::count], positions[index::count]
        batch_size = int(batch_size or self.batch_size)
        if self.workers:
            from mrcnn.data.process_loader import process_dataset
            return self._finish(process_dataset(self, order, positions, epoch, self.workers, _KEYS), batch_size)
        ds = tf.data.Dataset.from_tensor_slices((order, positions))
        touts = [self.specs[k][1] for k in _KEYS] + [tf.int32]

        def load(image_id, position):
            outs = tf.numpy_function(self.load_sample, [image_id, tf.constant(epoch, tf.int64), position],
                                     touts, stateful=False)
            sample = {}
            for k, t in zip(_KEYS, outs):
                t.set_shape(self.specs[k][0])
                sample[k] = t
            sample["image_id"] = tf.ensure_shape(outs[-1], [])   # the id loaded (see ``load_sample``)
            return sample

        return self._finish(ds.map(load, num_parallel_calls=self.num_parallel_calls, deterministic=True),
                            batch_size)

    def _finish(self, ds, batch_size):
        """Batch, set the determinism and sharding options, prefetch."""
        ds = ds.batch(batch_size, drop_remainder=True)
        options = tf.data.Options()
        options.deterministic = True
        options.autotune.enabled = True
        # Sharding is explicit (``shard``), so tf.data must not shard again.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        return ds.with_options(options).prefetch(tf.data.AUTOTUNE)

    def element_spec(self):
        spec = {k: tf.TensorSpec((self.batch_size,) + s, t) for k, (s, t) in self.specs.items()}
        spec["image_id"] = tf.TensorSpec((self.batch_size,), tf.int32)
        return spec
