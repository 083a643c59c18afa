"""Anchor generation with matterport's conventions (NumPy only).

Box format: (y1, x1, y2, x2) in pixels (or normalised by ``boxes.norm_boxes``).
One scale per pyramid level P2..P6; heights = scale / sqrt(ratio), widths =
scale * sqrt(ratio); centres at arange(0, feature_size, anchor_stride) *
feature_stride with no half-stride offset. Order: level, then row-major
feature position, then ratio (this order matches the RPN head's outputs and
the COCO weights).
"""
import collections
import math
import threading

import numpy as np

from mrcnn.structures.boxes import norm_boxes


def generate_anchors(scales, ratios, shape, feature_stride, anchor_stride):
    """Anchors of one feature map.

    scales: one number or a 1D array (matterport passes one scale per level).
    ratios: 1D array of width/height ratios, e.g. [0.5, 1, 2].
    shape: (height, width) of the feature map.
    feature_stride: pixels per feature-map cell. anchor_stride: cells between anchors.
    Returns float64 [rows * cols * len(scales) * len(ratios), (y1, x1, y2, x2)] pixels.
    """
    scales, ratios = np.meshgrid(np.atleast_1d(np.asarray(scales, float)),
                                 np.atleast_1d(np.asarray(ratios, float)))
    scales, ratios = scales.ravel(), ratios.ravel()
    half_sizes = 0.5 * np.stack([scales / np.sqrt(ratios), scales * np.sqrt(ratios)], axis=1)
    ys = np.arange(0, shape[0], anchor_stride) * feature_stride
    xs = np.arange(0, shape[1], anchor_stride) * feature_stride
    cy, cx = np.meshgrid(ys, xs, indexing="ij")
    centres = np.stack([cy.ravel(), cx.ravel()], axis=1).astype(float)  # [P, 2] row-major
    # [P, 1, 2] +- [1, K, 2] -> [P, K, 4]: position-major, then ratio.
    boxes = np.concatenate([centres[:, None] - half_sizes[None], centres[:, None] + half_sizes[None]],
                           axis=2)
    return boxes.reshape(-1, 4)


def generate_pyramid_anchors(scales, ratios, feature_shapes, feature_strides, anchor_stride):
    """Anchors of all pyramid levels, concatenated level by level.

    scales[i], feature_shapes[i] and feature_strides[i] describe level i.
    Returns float64 [A, (y1, x1, y2, x2)] pixels.
    """
    return np.concatenate([
        generate_anchors(scales[i], ratios, feature_shapes[i], feature_strides[i], anchor_stride)
        for i in range(len(scales))], axis=0)


def feature_shapes(image_shape, strides):
    """Feature-map sizes int [len(strides), 2]: ceil(side / stride) per level."""
    return np.array([[int(math.ceil(image_shape[0] / s)), int(math.ceil(image_shape[1] / s))]
                     for s in strides], dtype=int)


def compute_backbone_shapes(config, image_shape):
    """Feature-map sizes of the pyramid levels: int [len(BACKBONE_STRIDES), 2].

    Uses ``config.COMPUTE_BACKBONE_SHAPE(image_shape)`` when it is callable,
    otherwise ``feature_shapes(image_shape, config.BACKBONE_STRIDES)``.
    """
    if callable(config.COMPUTE_BACKBONE_SHAPE):
        return np.asarray(config.COMPUTE_BACKBONE_SHAPE(image_shape), dtype=int).reshape(-1, 2)
    return feature_shapes(image_shape, config.BACKBONE_STRIDES)


_CACHE = collections.OrderedDict()
_CACHE_SIZE = 32
_LOCK = threading.Lock()


def get_anchors(config, image_shape, normalized=True):
    """Anchors of an image of ``image_shape`` (H, W[, C]) under ``config`` (matterport's
    signature; reads RPN_ANCHOR_*, BACKBONE_STRIDES, COMPUTE_BACKBONE_SHAPE): see ``anchors_for``."""
    return anchors_for(image_shape, config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS,
                       config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE,
                       compute_backbone_shapes(config, image_shape), normalized)


def anchors_for(image_shape, scales, ratios, strides, anchor_stride, shapes=None,
                normalized=True):
    """Anchors of an image of ``image_shape`` (H, W[, C]), explicit arguments.

    scales/strides: one per level; ``shapes`` int [levels, 2] feature-map sizes (default
    ``feature_shapes(image_shape, strides)``). Returns a read-only float32
    [A, (y1, x1, y2, x2)], normalised with ``boxes.norm_boxes`` when ``normalized`` (pixels
    otherwise). Results are cached by (anchor settings, feature shapes, image size).
    """
    shapes = feature_shapes(image_shape, strides) if shapes is None else np.asarray(shapes, int)
    key = (tuple(np.ravel(scales).tolist()), tuple(np.ravel(ratios).tolist()),
           tuple(np.ravel(strides).tolist()), int(anchor_stride),
           shapes.tobytes(), tuple(int(s) for s in image_shape[:2]), bool(normalized))
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    anchors = generate_pyramid_anchors(scales, ratios, shapes, strides, anchor_stride)
    if normalized:
        anchors = norm_boxes(anchors, image_shape[:2])
    anchors = anchors.astype(np.float32)
    anchors.setflags(write=False)  # shared by every caller: keep the cache intact
    with _LOCK:
        _CACHE[key] = anchors
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return anchors
