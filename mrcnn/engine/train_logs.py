"""TensorBoard summaries and run files of one ``Trainer`` (written by the chief only)."""
from __future__ import annotations

import os

import tensorflow as tf

from mrcnn.engine.runtime import git_commit, package_versions
from mrcnn.io.runs import config_path, summary_tag, write_config

SUMMARY_EVERY_STEPS = 10  # TensorBoard steps/ cards: batch losses and LR every N steps


class TrainLogs:
    """Summary writers under the model's ``log_dir`` (train/, validation/) and its config.toml.

    ``model``: a ``MaskRCNN`` (its ``log_dir`` and ``config`` are read when writing).
    ``chief``: False on non-chief workers of a multi-worker strategy, which write nothing.
    """

    def __init__(self, model, chief=True):
        self.model, self.chief = model, chief
        self._writers = {}

    def writer(self, name):
        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(os.path.join(self.model.log_dir, name))
        return self._writers[name]

    def write_run_files(self):
        """config.toml with the git commit and package versions, once per run folder."""
        if not self.chief:
            return
        os.makedirs(self.model.log_dir, exist_ok=True)
        if not os.path.exists(config_path(self.model.log_dir)):
            extra = {"git_commit": git_commit(os.path.dirname(__file__)), **package_versions()}
            write_config(self.model.log_dir, self.model.config, extra)

    def scalars(self, split, logs, epoch, lr=None):
        """The epoch's mean losses (and LR) under ``split`` ("train" or "validation")."""
        if not self.chief:
            return
        with self.writer(split).as_default():
            for k, v in logs.items():
                tf.summary.scalar(summary_tag(k), v, step=epoch)
            if lr is not None:
                tf.summary.scalar("lr", lr, step=epoch)
        self.writer(split).flush()

    def step(self, global_step, values, lr):
        """Every SUMMARY_EVERY_STEPS steps: the batch losses and the LR at the global step
        (``steps/`` cards: the warm-up and the noise a per-epoch point hides)."""
        if not self.chief or (global_step % SUMMARY_EVERY_STEPS and global_step != 1):
            return
        with self.writer("train").as_default():
            for k, v in values.items():
                tf.summary.scalar("steps/" + summary_tag(k).split("/")[-1], v, step=global_step)
            tf.summary.scalar("steps/lr", float(lr), step=global_step)
