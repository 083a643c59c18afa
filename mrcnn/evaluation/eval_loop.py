"""Evaluate a model on a ``mrcnn.utils.Dataset`` with the one ``COCOEvaluator``.

Shared by evaluate.py and the per-epoch training callback, so both report the same numbers;
``open_run`` turns a trained run (config + class names + weights) into an inference model.
"""
from __future__ import annotations

import copy
import logging
import os
import re
import tempfile

import numpy as np

from mrcnn import utils
from mrcnn.evaluation.coco import COCOEvaluator
from mrcnn.io import runs
from mrcnn.io.weights_io import WeightsError

log = logging.getLogger(__name__)

# COCO-style evaluation scores the whole ranked list, so keep low-confidence detections
# (torchvision and Detectron2 use 0.05); DETECTION_MIN_CONFIDENCE=0.7 is for display.
EVAL_MIN_CONFIDENCE = 0.05


# --mixed-precision values of the evaluate command: None keeps the config's MIXED_PRECISION.
PRECISIONS = {"off": None, "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


def inference_config(config, min_confidence=EVAL_MIN_CONFIDENCE, precision=None):
    """A copy of a training config set up for evaluation (batch 1, low confidence cut).

    ``precision``: a key of ``PRECISIONS`` to compute in ("bfloat16": about 2x faster detection
    on CPUs with AMX), or None for the one the run trained with.
    """
    cfg = copy.copy(config)
    cfg.GPU_COUNT = 1
    cfg.IMAGES_PER_GPU = 1
    if min_confidence is not None:
        cfg.DETECTION_MIN_CONFIDENCE = float(min_confidence)
    if precision is not None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        cfg.MIXED_PRECISION = PRECISIONS[precision]
    cfg.derive()
    return cfg


def load_inference_model(config, weights, model_dir, hint=""):
    """Inference ``MaskRCNN`` built from ``config`` with the ``weights`` .h5 loaded by name.

    Raises WeightsError (its message ends with ``hint``) when the file does not fit the model or
    holds none of its layers; layers missing from the file keep their initial values (a warning).
    TensorFlow is imported here, not when this module loads.
    """
    from mrcnn.model import MaskRCNN

    model = MaskRCNN(mode="inference", config=config, model_dir=model_dir)
    loaded = model.load_weights(weights, by_name=True)
    if not loaded:
        raise WeightsError(f"{weights} holds none of the model's layers: it was saved from another "
                           f"model.{hint}")
    expected = [n for n, g in model.keras_model.weight_groups().items() if g.weights]
    missing = [n for n in expected if n not in loaded]
    if missing:
        log.warning("%d of %d layers are not in %s and keep their initial values: %s%s", len(missing),
                    len(expected), weights, ", ".join(missing[:5]), "..." if len(missing) > 5 else "")
    return model


def run_config(run, min_confidence=EVAL_MIN_CONFIDENCE, precision=None):
    """The inference config of a resolved run (``runs.resolve_run``): its config TOML, batch 1,
    ``min_confidence`` (None: the config's DETECTION_MIN_CONFIDENCE), ``precision`` (see
    ``inference_config``). TF-free; RunError if bad."""
    return inference_config(runs.read_config(run.config_path), min_confidence, precision)


def open_run(run, config=None, min_confidence=EVAL_MIN_CONFIDENCE, fallback_names=None, model_dir=None,
             hint=""):
    """Open a trained run: (inference ``MaskRCNN`` with the run's weights, ["BG", ...] class names).

    ``run``: a ``runs.Run``; ``config``: its inference config (default ``run_config(run,
    min_confidence)``); class names from state.json, else ``fallback_names`` (see
    ``runs.class_names``). Raises RunError (config, class count) before the model is built,
    WeightsError when the weights do not fit it.
    """
    config = config or run_config(run, min_confidence)
    names = [str(n) for n in runs.class_names(run.state, config.NUM_CLASSES, fallback_names)]
    model_dir = model_dir or (os.path.dirname(run.dir) if run.dir else tempfile.gettempdir())
    return load_inference_model(config, run.weights, model_dir, hint), names


def copy_weights(src_model, dst_model):
    """Copy every weight of one MaskRCNN into another with the same architecture."""
    dst = dst_model.keras_model.weight_groups()
    for name, layer in src_model.keras_model.weight_groups().items():
        for w_src, w_dst in zip(layer.weights, dst[name].weights):
            w_dst.assign(w_src.value if hasattr(w_src, "value") else w_src)


def ground_truth(dataset, image_id):
    """GT dict of one image for the evaluator: boxes int32 [N, 4], class_ids int32 [N], masks bool [H, W, N]."""
    masks, class_ids = dataset.load_mask(image_id)
    masks = np.asarray(masks, bool)
    return {"boxes": utils.extract_bboxes(masks), "class_ids": np.asarray(class_ids, np.int32),
            "masks": masks}


def evaluate_dataset(model, dataset, image_ids=None, limit=None, overlay_dir=None, overlay_count=4,
                     progress=True, evaluator=None, display_threshold=None):
    """Detect on every image of ``dataset`` and score it (overlays draw the predictions scoring
    at least ``display_threshold``: all of them score, only the confident ones are drawn).

    Returns (metrics dict from ``COCOEvaluator.summarize``, evaluator, overlay PNG paths).
    Overlays show ground truth beside the prediction for the first ``overlay_count`` images.
    """
    from tqdm.auto import tqdm

    ids = list(dataset.image_ids if image_ids is None else image_ids)
    if limit:
        ids = ids[:int(limit)]
    evaluator = evaluator or COCOEvaluator(list(dataset.class_names))
    evaluator.reset()
    overlays = []
    for image_id in tqdm(ids, desc="evaluate", leave=False, disable=not progress):
        image = dataset.load_image(image_id)
        gt = ground_truth(dataset, image_id)
        pred = model.detect([image])[0]
        key = dataset.image_info[image_id].get("id", image_id)
        evaluator.add(key, gt, pred, height=image.shape[0], width=image.shape[1])
        if overlay_dir and len(overlays) < overlay_count:
            overlays.append(_overlay(image, gt, pred, dataset, overlay_dir, key, display_threshold))
    metrics = evaluator.summarize(verbose=False)
    return metrics, evaluator, overlays


def _overlay(image, gt, pred, dataset, out_dir, key, display_threshold=None):
    """Ground truth beside the predictions scoring at least ``display_threshold``, with a legend."""
    from matplotlib.patches import Patch

    from mrcnn.viz import display as visualize

    os.makedirs(out_dir, exist_ok=True)
    # Image ids come from annotation files (VOC <image_id>, CVAT names): keep them file-name safe.
    path = os.path.join(out_dir, re.sub(r"[^\w.-]+", "_", str(key)).lstrip(".") + ".png")
    keep = np.asarray(pred["scores"]) >= (display_threshold or 0)
    fig, axes = visualize.pyplot().subplots(1, 2, figsize=(16, 8.8))
    gt_match, pred_match, _ = visualize.display_differences(
        image, gt["boxes"], gt["class_ids"], gt["masks"], pred["rois"][keep], pred["class_ids"][keep],
        pred["scores"][keep], pred["masks"][..., keep], list(dataset.class_names), title=str(key), ax=axes)
    counts = ((pred_match > -1).sum(), (pred_match == -1).sum(), (gt_match == -1).sum())
    labels = (f"matched: same class, mask IoU >= 0.5 ({counts[0]})", f"false positive ({counts[1]})",
              f"missed ground truth ({counts[2]})")
    colors = ((0, 1, 0, 0.8), (1, 0, 0, 1), (1, 0.6, 0, 1))
    fig.legend(handles=[Patch(color=c, label=t) for c, t in zip(colors, labels)], loc="lower center",
               ncol=3, frameon=False, fontsize=11,
               title=f"predictions scoring >= {display_threshold or 0:g}; caption: class score / mask IoU "
                     f"with the nearest ground truth")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    visualize.finish_figure(fig, path, False)
    return path


def flat_metrics(metrics, prefix=""):
    """The scalar part of a summarize() dict as {prefix + 'segm_AP': v, ...}."""
    out = {}
    for iou_type in ("segm", "bbox"):
        for k, v in (metrics.get(iou_type) or {}).items():
            if isinstance(v, (int, float)):
                out[f"{prefix}{iou_type}_{k}"] = float(v)
    if "matterport_mAP50" in metrics:
        out[f"{prefix}matterport_mAP50"] = float(metrics["matterport_mAP50"])
    return out
