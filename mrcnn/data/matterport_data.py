"""matterport's NumPy data helpers from ``model.py`` (re-exported by ``mrcnn.model``), for the
inspect_data / inspect_model notebooks: ``load_image_gt``, ``build_rpn_targets``,
``generate_random_rois``, ``build_detection_targets``, ``data_generator``.

Training itself uses ``mrcnn.data.data_pipeline`` (tf.data); these keep matterport's signatures,
defaults and dtypes. Boxes are (y1, x1, y2, x2) in pixels. No TensorFlow.
"""
from __future__ import annotations

import logging

import numpy as np

from mrcnn import utils
from mrcnn.data import inputs
from mrcnn.data import rpn_targets
from mrcnn.structures.anchors import compute_backbone_shapes

_logger = logging.getLogger(__name__)


def load_image_gt(dataset, config, image_id, augment=False, augmentation=None, use_mini_mask=False):
    """matterport's signature (``use_mini_mask`` defaults to False). Returns image uint8
    [H, W, 3] molded size, image_meta float64 [12 + C], class_ids int32 [N], bbox int32
    [N, 4], mask bool [H, W, N] (MINI_MASK_SHAPE + [N] with mini-masks)."""
    return inputs.load_image_gt(dataset, config, image_id, augment=augment,
                                augmentation=augmentation, use_mini_mask=use_mini_mask)


def build_rpn_targets(image_shape, anchors, gt_class_ids, gt_boxes, config):
    """rpn_match int32 [A] (1 / -1 / 0) and rpn_bbox float64 [RPN_TRAIN_ANCHORS_PER_IMAGE, 4]
    (deltas / RPN_BBOX_STD_DEV of the positives). ``image_shape`` is unused, as in matterport."""
    rpn_match, rpn_bbox = rpn_targets.build_rpn_targets(
        np.asarray(anchors, np.float32), np.asarray(gt_class_ids), np.asarray(gt_boxes, np.float32),
        config.RPN_TRAIN_ANCHORS_PER_IMAGE, config.RPN_BBOX_STD_DEV,
        rng=np.random.default_rng(np.random.randint(2 ** 31)))
    return rpn_match.astype(np.int32), rpn_bbox.astype(np.float64)


def _random_boxes(y_range, x_range, count):
    """``count`` int32 boxes with y1 < y2 in [y_range), x1 < x2 in [x_range) (global np.random)."""
    def sides(lo, hi):
        out = np.zeros((0, 2), np.int32)
        while len(out) < count:
            pairs = np.sort(np.random.randint(lo, max(hi, lo + 2), (2 * count, 2)), axis=1)
            out = np.concatenate([out, pairs[pairs[:, 1] - pairs[:, 0] >= 1]])
        return out[:count]
    ys, xs = sides(*y_range), sides(*x_range)
    return np.stack([ys[:, 0], xs[:, 0], ys[:, 1], xs[:, 1]], axis=1).astype(np.int32)


def generate_random_rois(image_shape, count, gt_class_ids, gt_boxes):
    """ROIs like an RPN's: int32 [count, 4] pixels, 90% around the GT boxes (within one box
    size of each), the rest anywhere in the image."""
    gt_boxes = np.asarray(gt_boxes).reshape(-1, 4)
    rois = np.zeros((count, 4), np.int32)
    per_box = int(0.9 * count / gt_boxes.shape[0]) if gt_boxes.shape[0] else 0
    for i, (y1, x1, y2, x2) in enumerate(gt_boxes):
        h, w = y2 - y1, x2 - x1
        rois[per_box * i:per_box * (i + 1)] = _random_boxes(
            (max(y1 - h, 0), min(y2 + h, image_shape[0])), (max(x1 - w, 0), min(x2 + w, image_shape[1])),
            per_box)
    rest = count - per_box * gt_boxes.shape[0]
    if rest:
        rois[-rest:] = _random_boxes((0, image_shape[0]), (0, image_shape[1]), rest)
    return rois


def _sample_rois(iou_max, config):
    """Indices of TRAIN_ROIS_PER_IMAGE ROIs: <= ROI_POSITIVE_RATIO with IoU > 0.5, then
    negatives (IoU < 0.5), then repeats of negatives; and the count of positives."""
    n = config.TRAIN_ROIS_PER_IMAGE
    fg, bg = np.flatnonzero(iou_max > 0.5), np.flatnonzero(iou_max < 0.5)
    fg_count = int(n * config.ROI_POSITIVE_RATIO)
    fg = np.random.choice(fg, fg_count, replace=False) if len(fg) > fg_count else fg
    bg = np.random.choice(bg, n - len(fg), replace=False) if len(bg) > n - len(fg) else bg
    keep = np.concatenate([fg, bg])
    if len(keep) < n:
        pool = bg if len(bg) else np.arange(len(iou_max))
        keep = np.concatenate([keep, np.random.choice(pool, n - len(keep), replace=True)])
    return keep.astype(np.int64), len(fg)


def build_detection_targets(rpn_rois, gt_class_ids, gt_boxes, gt_masks, config):
    """Stage-2 targets in NumPy (debugging; training computes them in the graph).

    rpn_rois [N, 4] pixels; gt_class_ids int32 [G]; gt_boxes int32 [G, 4]; gt_masks bool
    [H, W, G] (full or mini). Returns rois [R, 4] (rpn_rois' dtype), class_ids int32 [R],
    bboxes float32 [R, NUM_CLASSES, 4] (deltas / BBOX_STD_DEV at the GT class), masks float32
    [R, MASK_SHAPE[0], MASK_SHAPE[1], NUM_CLASSES]; R = TRAIN_ROIS_PER_IMAGE.
    """
    rpn_rois = np.asarray(rpn_rois)
    ids = np.flatnonzero(np.asarray(gt_class_ids) > 0)
    if not len(ids):
        raise ValueError("build_detection_targets: the image must contain instances")
    gt_class_ids = np.asarray(gt_class_ids, np.int32)[ids]
    gt_boxes, gt_masks = np.asarray(gt_boxes)[ids], np.asarray(gt_masks)[:, :, ids]
    overlaps = utils.compute_overlaps(rpn_rois.astype(np.float64), gt_boxes.astype(np.float64))
    assignment = np.argmax(overlaps, axis=1)
    keep, n_fg = _sample_rois(overlaps.max(axis=1), config)
    rois = rpn_rois[keep]
    gt_of_roi = assignment[keep]
    class_ids = gt_class_ids[gt_of_roi].astype(np.int32)
    class_ids[n_fg:] = 0
    r, c = config.TRAIN_ROIS_PER_IMAGE, config.NUM_CLASSES
    bboxes = np.zeros((r, c, 4), np.float32)
    masks = np.zeros((r, config.MASK_SHAPE[0], config.MASK_SHAPE[1], c), np.float32)
    for i in np.flatnonzero(class_ids > 0):
        g = gt_of_roi[i]
        bboxes[i, class_ids[i]] = utils.box_refinement(rois[i:i + 1].astype(np.float32),
                                                       gt_boxes[g:g + 1].astype(np.float32))[0]
        full = gt_masks[:, :, g]
        if config.USE_MINI_MASK:
            full = utils.expand_mask(gt_boxes[g:g + 1], gt_masks[:, :, g:g + 1], config.IMAGE_SHAPE)[:, :, 0]
        y1, x1, y2, x2 = rois[i].astype(np.int32)
        if y2 > y1 and x2 > x1:
            masks[i, :, :, class_ids[i]] = utils.resize(full[y1:y2, x1:x2].astype(np.float32),
                                                        tuple(config.MASK_SHAPE))
    bboxes /= np.asarray(config.BBOX_STD_DEV, np.float32)
    return rois, class_ids, bboxes, masks


def _sample_arrays(dataset, config, image_id, anchors, augment, augmentation, random_rois,
                   detection_targets):
    """One image's generator arrays, or None when it has no instances."""
    image, meta, class_ids, boxes, masks = load_image_gt(
        dataset, config, image_id, augment=augment, augmentation=augmentation,
        use_mini_mask=config.USE_MINI_MASK)
    if not np.any(class_ids > 0):
        return None
    rpn_match, rpn_bbox = build_rpn_targets(image.shape, anchors, class_ids, boxes, config)
    if boxes.shape[0] > config.MAX_GT_INSTANCES:
        pick = np.random.choice(boxes.shape[0], config.MAX_GT_INSTANCES, replace=False)
        class_ids, boxes, masks = class_ids[pick], boxes[pick], masks[:, :, pick]
    out = {"images": utils.mold_image(image.astype(np.float32), config), "image_meta": meta,
           "rpn_match": rpn_match[:, None], "rpn_bbox": rpn_bbox,
           "gt_class_ids": class_ids, "gt_boxes": boxes, "gt_masks": masks}
    if random_rois:
        out["rpn_rois"] = generate_random_rois(image.shape, random_rois, class_ids, boxes)
        if detection_targets:
            (out["rois"], out["mrcnn_class_ids"], out["mrcnn_bbox"],
             out["mrcnn_mask"]) = build_detection_targets(out["rpn_rois"], class_ids, boxes, masks, config)
    return out


def _stack(samples, config):
    """matterport's batch arrays: GT padded to MAX_GT_INSTANCES (boxes int32, masks bool)."""
    g = config.MAX_GT_INSTANCES
    b = len(samples)
    batch = {k: np.stack([s[k] for s in samples]) for k in samples[0]
             if k not in ("gt_class_ids", "gt_boxes", "gt_masks")}
    batch["images"] = batch["images"].astype(np.float32)
    batch["gt_class_ids"] = np.zeros((b, g), np.int32)
    batch["gt_boxes"] = np.zeros((b, g, 4), np.int32)
    batch["gt_masks"] = np.zeros((b,) + samples[0]["gt_masks"].shape[:2] + (g,), bool)
    for i, s in enumerate(samples):
        n = len(s["gt_class_ids"])
        batch["gt_class_ids"][i, :n] = s["gt_class_ids"]
        batch["gt_boxes"][i, :n] = s["gt_boxes"]
        batch["gt_masks"][i, :, :, :n] = s["gt_masks"]
    return batch


def data_generator(dataset, config, shuffle=True, augment=False, augmentation=None, random_rois=0,
                   batch_size=1, detection_targets=False, no_augmentation_sources=None):
    """matterport's endless Python generator of ``(inputs, outputs)`` batches.

    inputs: images float32 [B, H, W, 3] molded, image_meta [B, META], rpn_match int32 [B, A, 1],
    rpn_bbox float64 [B, 256, 4], gt_class_ids int32 [B, MAX_GT], gt_boxes int32 [B, MAX_GT, 4],
    gt_masks bool [B, h, w, MAX_GT]; then rpn_rois [B, random_rois, 4] when ``random_rois``, and
    rois [B, R, 4] with ``detection_targets``, whose outputs are mrcnn_class_ids [B, R, 1],
    mrcnn_bbox [B, R, C, 4], mrcnn_mask [B, R, 28, 28, C]. Images without instances are skipped;
    a failing image is logged and skipped (the sixth error is raised). Training uses
    ``mrcnn.data.data_pipeline`` instead (tf.data, parallel).
    """
    image_ids = np.copy(dataset.image_ids)
    no_aug = set(no_augmentation_sources or [])
    anchors = utils.generate_pyramid_anchors(
        config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS,
        compute_backbone_shapes(config, config.IMAGE_SHAPE), config.BACKBONE_STRIDES,
        config.RPN_ANCHOR_STRIDE)
    index, errors, samples = -1, 0, []
    while True:
        index = (index + 1) % len(image_ids)
        if shuffle and index == 0:
            np.random.shuffle(image_ids)
        image_id = image_ids[index]
        aug = None if dataset.image_info[image_id]["source"] in no_aug else augmentation
        try:
            sample = _sample_arrays(dataset, config, image_id, anchors, augment, aug, random_rois,
                                    detection_targets)
        except (GeneratorExit, KeyboardInterrupt):
            raise
        except Exception:
            _logger.exception("Error processing image %s", dataset.image_info[image_id])
            errors += 1
            if errors > 5:
                raise
            continue
        if sample is None:
            continue
        samples.append(sample)
        if len(samples) < batch_size:
            continue
        batch, samples = _stack(samples, config), []
        names = ["images", "image_meta", "rpn_match", "rpn_bbox", "gt_class_ids", "gt_boxes", "gt_masks"]
        names += ["rpn_rois"] * bool(random_rois) + ["rois"] * bool(random_rois and detection_targets)
        outputs = []
        if random_rois and detection_targets:
            outputs = [batch["mrcnn_class_ids"][..., None], batch["mrcnn_bbox"], batch["mrcnn_mask"]]
        yield [batch[n] for n in names], outputs
