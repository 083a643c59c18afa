"""Per-image training inputs, in NumPy (runs inside the tf.data pipeline's parallel map).

``load_image_gt`` keeps matterport's contract for notebooks; ``prepare_sample`` adds what the
training graph needs at fixed shapes: RPN targets, normalised GT boxes padded to
MAX_GT_INSTANCES, (mini-)masks and the active class ids. Box format (y1, x1, y2, x2).
``prepare_sample`` also checks the sample it loads (``sample_problems``), so training needs no
up-front pass over the dataset; ``check_image``/``validate_dataset`` remain for users who
want one.
"""
from __future__ import annotations

import concurrent.futures as futures
import logging

import numpy as np

from mrcnn import utils
from mrcnn.data.rpn_targets import build_rpn_targets

log = logging.getLogger(__name__)


def _apply_augmentation(augmentation, image, mask, rng):
    """imgaug pipelines (matterport), or any callable (image, masks, rng) -> (image, masks)."""
    if hasattr(augmentation, "to_deterministic"):
        from mrcnn.data.imgaug_compat import apply_imgaug

        # A copy seeded from ``rng``: imgaug's own random state is global and mutated by every
        # call (not reproducible under SEED, and shared by the pipeline's threads).
        augmentation = augmentation.deepcopy()
        augmentation.seed_(int(rng.integers(2 ** 31)))
        return apply_imgaug(augmentation, image, mask)
    out_image, out_mask = augmentation(image, mask, rng)
    if out_image.shape[:2] != image.shape[:2]:
        out_image, out_mask = _fit_canvas(out_image, out_mask, image.shape[:2])
    return out_image, out_mask


def _fit_canvas(image, mask, shape):
    """Centre-crop or zero-pad image and masks back to ``shape`` (after a scale jitter)."""
    def fit(a):
        out = np.zeros(tuple(shape) + a.shape[2:], a.dtype)
        h, w = a.shape[:2]
        sy, sx = max((h - shape[0]) // 2, 0), max((w - shape[1]) // 2, 0)
        dy, dx = max((shape[0] - h) // 2, 0), max((shape[1] - w) // 2, 0)
        ch, cw = min(h, shape[0]), min(w, shape[1])
        out[dy:dy + ch, dx:dx + cw] = a[sy:sy + ch, sx:sx + cw]
        return out
    return fit(image), fit(mask)


class UnusableSample(ValueError):
    """An image whose annotations would break training; ``problems`` lists why (strings)."""

    def __init__(self, image_id, reference, problems):
        self.image_id, self.problems = image_id, list(problems)
        super().__init__(f"Image {image_id} ({reference}): " + "; ".join(self.problems))


def image_ref(dataset, image_id):
    """How a message names an image: its ``image_reference``, else its path ("" without one)."""
    return dataset.image_reference(image_id) or dataset.image_info[image_id].get("path", "")


def _load_raw_gt(dataset, image_id):
    """image [H, W, C] as loaded, masks bool [h, w, N] and class ids int32 [N] as loaded
    (matterport's empty [0, 0, 0] masks become [H, W, 0])."""
    image = dataset.load_image(image_id)
    mask, class_ids = dataset.load_mask(image_id)
    mask = np.asarray(mask).astype(bool, copy=False)
    if mask.size == 0:  # matterport's base load_mask returns an empty [0, 0, 0] array
        mask = np.zeros(np.shape(image)[:2] + (0,), bool)
    return image, mask, np.asarray(class_ids, np.int32).reshape(-1)


def load_image_gt(dataset, config, image_id, augment=False, augmentation=None,
                  use_mini_mask=None, rng=None):
    """Load and resize one image with its GT (matterport semantics).

    Returns image uint8 [H, W, 3] (molded size), image_meta [META], class_ids int32 [N],
    bbox int32 [N, 4] pixels, mask bool [H, W, N] (or [mini_h, mini_w, N] with mini-masks).
    Instances whose mask ends up empty (cropped away) are dropped.
    """
    image, mask, class_ids = _load_raw_gt(dataset, image_id)
    return _mold_gt(dataset, config, image_id, image, mask, class_ids, augment, augmentation,
                    use_mini_mask, rng)


def _mold_gt(dataset, config, image_id, image, mask, class_ids, augment=False, augmentation=None,
             use_mini_mask=None, rng=None):
    """``load_image_gt`` after loading: resize, augment, drop emptied instances, boxes, mini-masks."""
    if use_mini_mask is None:
        use_mini_mask = config.USE_MINI_MASK
    rng = rng if rng is not None else np.random.default_rng()
    if mask.ndim != 3 or mask.shape[:2] != image.shape[:2] or mask.shape[2] != len(class_ids):
        # Caught here too because check_image trusts image_info's height/width.
        raise ValueError(f"Image {image_id} ({dataset.image_reference(image_id)}): load_mask returned masks "
                         f"{mask.shape} and {len(class_ids)} class ids for an image of shape {image.shape}; "
                         "expected [H, W, N] masks of the image's size and N class ids")
    original_shape = image.shape
    image, window, scale, padding, crop = utils.resize_image(
        image, min_dim=config.IMAGE_MIN_DIM, min_scale=config.IMAGE_MIN_SCALE,
        max_dim=config.IMAGE_MAX_DIM, mode=config.IMAGE_RESIZE_MODE, rng=rng)
    mask = utils.resize_mask(mask, scale, padding, crop)
    if augment and rng.random() < 0.5:  # matterport's legacy flag: a horizontal flip
        image, mask = image[:, ::-1].copy(), mask[:, ::-1].copy()
    if augmentation is not None:
        image, mask = _apply_augmentation(augmentation, image, mask, rng)
    # any() over the leading axes, one at a time: 100x faster than over a reshaped [H*W, N].
    keep = mask.any(axis=0).any(axis=0) if mask.shape[-1] else np.zeros(0, bool)
    mask, class_ids = mask[:, :, keep], class_ids[keep]
    bbox = utils.extract_bboxes(mask)
    active = np.zeros([dataset.num_classes], np.int32)
    active[dataset.source_class_ids[dataset.image_info[image_id]["source"]]] = 1
    if use_mini_mask and mask.shape[-1]:
        mask = utils.minimize_mask(bbox, mask, config.MINI_MASK_SHAPE)
    elif use_mini_mask:
        mask = np.zeros(tuple(config.MINI_MASK_SHAPE) + (0,), bool)
    meta = utils.compose_image_meta(image_id, original_shape, image.shape, window, scale, active)
    return image, meta, class_ids, bbox, mask


def prepare_sample(dataset, config, image_id, anchors, augmentation=None, rng=None):
    """One training sample at fixed shapes, for the tf.data pipeline.

    anchors: pixel anchors [A, 4] (or an ``rpn_targets.AnchorIndex``).
    Returns a dict: image uint8 [H, W, 3], active_class_ids int32 [C], rpn_match int32 [A],
    rpn_bbox float32 [R, 4], gt_class_ids int32 [G], gt_boxes float32 [G, 4] normalised,
    gt_masks bool [mh, mw, G] (G = MAX_GT_INSTANCES; zero padding).
    Raises ``UnusableSample`` for annotations that would break training (``sample_problems``)
    and ValueError for unusable pixels; the pipeline skips and reports such images.
    """
    rng = rng if rng is not None else np.random.default_rng()
    image, mask, class_ids = _load_raw_gt(dataset, image_id)
    # Validated here, on the masks this load decodes anyway: no up-front pass over the dataset.
    problems = sample_problems(mask, class_ids, np.shape(image)[:2], dataset.num_classes)
    if problems:
        raise UnusableSample(image_id, image_ref(dataset, image_id), problems)
    image, meta, class_ids, bbox, mask = _mold_gt(
        dataset, config, image_id, image, mask, class_ids, augmentation=augmentation, rng=rng)
    image = _pipeline_image(image, dataset, config, image_id)
    g = config.MAX_GT_INSTANCES
    if len(class_ids) > g:
        keep = np.sort(rng.choice(len(class_ids), g, replace=False))
        class_ids, bbox, mask = class_ids[keep], bbox[keep], mask[:, :, keep]
    rpn_match, rpn_bbox = build_rpn_targets(anchors, class_ids, bbox, config.RPN_TRAIN_ANCHORS_PER_IMAGE,
                                            config.RPN_BBOX_STD_DEV, rng=rng)
    n = len(class_ids)
    gt_class_ids = np.zeros([g], np.int32)
    gt_boxes = np.zeros([g, 4], np.float32)
    gt_masks = np.zeros(mask.shape[:2] + (g,), bool)
    gt_class_ids[:n] = class_ids
    if n:
        gt_boxes[:n] = utils.norm_boxes(bbox, image.shape[:2])
        gt_masks[:, :, :n] = mask
    return {"image": image, "active_class_ids": meta[12:].astype(np.int32), "rpn_match": rpn_match,
            "rpn_bbox": rpn_bbox, "gt_class_ids": gt_class_ids, "gt_boxes": gt_boxes, "gt_masks": gt_masks}


def _pipeline_image(image, dataset, config, image_id):
    """The uint8 [H, W, C] image the pipeline carries. Float images holding 0..255 values
    (matterport accepted them) are rounded; NaN/inf pixels or a wrong channel count raise."""
    image = np.asarray(image)
    where = f"Image {image_id} ({dataset.image_reference(image_id) or dataset.image_info[image_id].get('path')})"
    if image.ndim != 3 or image.shape[2] != config.IMAGE_CHANNEL_COUNT:
        raise ValueError(f"{where}: load_image returned shape {image.shape}; expected "
                         f"[H, W, {config.IMAGE_CHANNEL_COUNT}] (IMAGE_CHANNEL_COUNT)")
    if image.dtype == np.uint8:
        return image
    if not np.isfinite(image).all():
        raise ValueError(f"{where}: load_image returned NaN or infinite pixel values; "
                         "it must return pixel values in 0..255")
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def sample_problems(mask, class_ids, image_shape, num_classes):
    """Problems that would break training on one loaded sample: list of strings (empty when fine).

    mask [h, w, N] as loaded, class_ids [N], image_shape (H, W). Checks the masks against the
    image size, empty masks, class ids outside 1..num_classes-1 (negative ids are crowd regions
    and count by their absolute value) and mismatched counts.
    """
    mask = np.asarray(mask)
    class_ids = np.asarray(class_ids).reshape(-1)
    if mask.size == 0 and len(class_ids) == 0:
        return []
    if mask.ndim != 3:
        return [f"load_mask returned shape {mask.shape}; expected [H, W, N]"]
    problems = []
    if mask.shape[:2] != tuple(image_shape):
        problems.append(f"mask size {mask.shape[:2]} differs from image size {tuple(image_shape)}")
    if mask.shape[2] != len(class_ids):
        problems.append(f"{mask.shape[2]} masks but {len(class_ids)} class ids")
    # any() over the leading axes, one at a time (see _mold_gt).
    filled = mask.any(axis=0).any(axis=0) if mask.shape[2] else np.zeros(0, bool)
    empty = [int(i) for i in np.flatnonzero(~filled)]
    if empty:
        problems.append(f"empty mask for instance(s) {empty}")
    # Negative ids are crowds (matterport's COCO loader): valid when |id| is a class.
    bad = [int(c) for c in class_ids if c == 0 or abs(c) >= num_classes]
    if bad:
        problems.append(f"class ids {bad} outside 1..{num_classes - 1} (negative ids mark crowds)")
    return problems


def check_image(dataset, image_id):
    """``sample_problems`` of one dataset image, loading only its masks: list of strings.

    For users who validate a dataset before training (``train()`` checks each sample as it
    loads it). Decodes the image only when ``image_info`` lacks height/width.
    """
    info = dataset.image_info[image_id]
    try:
        mask, class_ids = dataset.load_mask(image_id)
    except Exception as exc:  # noqa: BLE001 - any loader failure makes the image unusable
        return [f"load_mask failed: {exc!r}"]
    if np.asarray(mask).size == 0 and np.asarray(class_ids).size == 0:
        return []
    if info.get("height") and info.get("width"):
        shape = (int(info["height"]), int(info["width"]))
    else:
        try:
            shape = dataset.load_image(image_id).shape[:2]
        except Exception as exc:  # noqa: BLE001
            return [f"load_image failed: {exc!r}"]
    return sample_problems(mask, class_ids, shape, dataset.num_classes)


def validate_dataset(dataset, image_ids=None, workers=4):
    """Check every image in parallel. Returns (good_ids, {image_id: [problems]})."""
    ids = list(dataset.image_ids if image_ids is None else image_ids)
    with futures.ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda i: check_image(dataset, i), ids))
    bad = {i: p for i, p in zip(ids, results) if p}
    for i, problems in bad.items():
        log.warning("Skipping image %s (%s): %s", i, image_ref(dataset, i), "; ".join(problems))
    return [i for i in ids if i not in bad], bad
