"""Training callbacks used by train.py: per-epoch validation AP and the run-folder bookkeeping.

Both are ordinary Keras callbacks, so they can be passed to ``MaskRCNN.train(custom_callbacks=...)``.
"""
from __future__ import annotations

import logging
import os
import time

import keras
import numpy as np
import tensorflow as tf

from mrcnn.evaluation import eval_loop
from mrcnn.io import runs

log = logging.getLogger(__name__)


class EvaluationCallback(keras.callbacks.Callback):
    """After each epoch, copy the weights into an inference model and score ``dataset``.

    Adds ``val_segm_AP``, ``val_segm_AP50``, ``val_bbox_AP``, ... and ``val_matterport_mAP50``
    to the epoch logs, writes them to TensorBoard (validation/) with a few prediction images.
    """

    def __init__(self, train_model, dataset, every=1, limit=None, images=3, progress=True):
        super().__init__()
        self.train_model = train_model
        self.dataset = dataset
        self.every = max(int(every), 1)
        self.limit = limit
        self.images = images
        self.progress = progress
        self._infer = None
        self.last_metrics = None

    def _inference_model(self):
        if self._infer is None:
            from mrcnn.model import MaskRCNN

            cfg = eval_loop.inference_config(self.train_model.config)
            self._infer = MaskRCNN(mode="inference", config=cfg, model_dir=self.train_model.model_dir)
        return self._infer

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or (epoch + 1) % self.every:
            return
        infer = self._inference_model()
        eval_loop.copy_weights(self.train_model, infer)
        out_dir = os.path.join(self.train_model.log_dir, "val_images", f"epoch_{epoch + 1:04d}")
        metrics, _, overlays = eval_loop.evaluate_dataset(
            infer, self.dataset, limit=self.limit, overlay_dir=out_dir if self.images else None,
            overlay_count=self.images, progress=self.progress,
            display_threshold=self.train_model.config.DETECTION_MIN_CONFIDENCE)
        self.last_metrics = metrics
        flat = eval_loop.flat_metrics(metrics, prefix="val_")
        logs.update(flat)
        writer = tf.summary.create_file_writer(os.path.join(self.train_model.log_dir, "validation"))
        with writer.as_default():
            for k, v in flat.items():
                if v >= 0:  # COCO's -1: no objects of that size, not a score
                    tf.summary.scalar(runs.summary_tag(k), v, step=epoch + 1)
            for i, path in enumerate(overlays):
                tf.summary.image(f"predictions/{i}", runs.crop_to_content(_read_png(path))[None], step=epoch + 1)
        writer.flush()


def current_lr(train_model):
    """The optimizer's learning rate now (after warm-up steps), or NaN if there is none yet."""
    opt = getattr(getattr(train_model, "_trainer", None), "optimizer", None)
    try:
        return float(keras.ops.convert_to_numpy(opt.learning_rate))
    except (AttributeError, TypeError, ValueError):
        return float("nan")


_SHORT = (("loss", "loss"), ("rpn_class_loss", "rpn_cls"), ("rpn_bbox_loss", "rpn_box"),
          ("mrcnn_class_loss", "cls"), ("mrcnn_bbox_loss", "box"), ("mrcnn_mask_loss", "mask"))


def epoch_line(row, total=None):
    """``epoch 3/20  loss 0.81/0.90  rpn_cls ... mask 0.21/0.25  segm_AP 0.512  bbox_AP 0.480
    lr 0.001  42.1s``: train/validation per loss, like Keras' and YOLO's per-epoch lines."""
    parts = [f"epoch {row['epoch']}/{total}" if total else f"epoch {row['epoch']}"]
    for key, short in _SHORT:
        if key in row:
            val = row.get("val_" + key)
            parts.append(f"{short} {row[key]:.3f}" + (f"/{val:.3f}" if val is not None else ""))
    for key in ("val_segm_AP", "val_bbox_AP"):
        if key in row and row[key] >= 0:
            parts.append(f"{key[4:]} {row[key]:.3f}")
    if np.isfinite(row.get("lr", np.nan)):
        parts.append(f"lr {row['lr']:.3g}")
    parts.append(f"{row.get('time', 0):.1f}s")
    return "  ".join(parts)


def _read_png(path):
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


class RunLogger(keras.callbacks.Callback):
    """results.csv / results.png each epoch, best.h5 / last.h5 copies and state.json updates,
    and one line per epoch that stays on screen (``verbose``): losses, validation AP, LR, time."""

    def __init__(self, train_model, state, metric="val_segm_AP", verbose=True):
        super().__init__()
        self.train_model = train_model
        self.state = state
        self.metric = metric
        self.verbose = verbose
        self._started = None

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        run_dir = self.train_model.log_dir
        ckpt = logs.pop("checkpoint", None)
        row = {"epoch": epoch + 1}
        row.update({k: float(v) for k, v in logs.items() if isinstance(v, (int, float, np.floating))})
        row["lr"] = current_lr(self.train_model)
        row["time"] = round(time.monotonic() - (self._started or time.monotonic()), 2)
        if self.verbose:
            print(epoch_line(row, self.state.get("epochs")), flush=True)
        runs.append_results(run_dir, row)
        try:
            runs.plot_results(run_dir)
        except Exception as exc:  # noqa: BLE001 - a plot must never stop training
            log.warning("Could not draw results.png: %s", exc)
        if ckpt:
            runs.link_or_copy(ckpt, os.path.join(run_dir, runs.LAST))
            name = next((k for k in (self.metric, "val_loss", "loss") if k in logs), None)
            value = logs.get(name)
            if self._better(name, value):
                runs.link_or_copy(ckpt, os.path.join(run_dir, runs.BEST))
                self.state["best"] = {"epoch": epoch + 1, "metric": name,
                                      "value": None if value is None else float(value)}
            keep = getattr(self.train_model.config, "KEEP_CHECKPOINTS", 0)
            runs.prune_checkpoints(run_dir, keep, (self.state.get("best") or {}).get("epoch"))
        self.state["completed_epoch"] = epoch + 1
        runs.write_state(run_dir, self.state)

    def _better(self, name, value):
        best = self.state.get("best")
        if not best or best.get("metric") != name or best.get("value") is None:
            return True
        if value is None or not np.isfinite(value):
            return False
        return value < best["value"] if name.endswith("loss") else value > best["value"]
