"""Crop-and-resize with gathers and bilinear weights, so that XLA can compile it.

``tf.image.crop_and_resize`` has no XLA kernel on CPU, and the pyramid ROIAlign around it splits
the ROIs by level with ``tf.where``/``dynamic_stitch`` (dynamic shapes). The functions here keep
every shape static: each output sample reads its 2x2 neighbourhood with one ``tf.gather`` from a
flattened feature table and mixes it with the same lerps as TensorFlow's kernel, so forward
values and feature-map gradients equal ``crop_and_resize(method="bilinear")`` to float rounding.

Sampling (TensorFlow's convention): boxes are normalised (y1, x1, y2, x2); for crop_h > 1 row i
samples y = y1*(H-1) + i*(y2-y1)*(H-1)/(crop_h-1), for crop_h == 1 the box centre
0.5*(y1+y2)*(H-1); likewise x. Samples outside [0, H-1] x [0, W-1] give ``extrapolation_value``
(no gradient). Flipped boxes (y1 > y2) sample upside down, as in TensorFlow. One deliberate
difference: samples within EDGE_TOLERANCE of the map's edge (boxes clipped to [0, 1]) read the
edge pixel, where TensorFlow's kernel gives the edge value or 0 depending on float rounding.
"""
from __future__ import annotations

import tensorflow as tf

EDGE_TOLERANCE = 1e-5   # pixels per pixel of map size (2.6e-3 px on a 256 px map)


def _axis_samples(lo, hi, size, crop):
    """lo, hi [N] normalised box edges on one axis, map sizes ``size`` int32 [N], ``crop`` (int).

    Returns (low index int32 [N, crop], high index int32 [N, crop], lerp float32 [N, crop],
    valid bool [N, crop]); indices are clamped into [0, size-1] so gathers stay in range.
    """
    extent = tf.cast(size - 1, tf.float32)[:, None]                  # [N, 1]
    lo, hi = lo[:, None], hi[:, None]
    if crop > 1:
        # Same operation order as TensorFlow's kernel, for the same float rounding.
        scale = (hi - lo) * extent / float(crop - 1)
        pos = lo * extent + tf.range(crop, dtype=tf.float32)[None, :] * scale
    else:
        pos = 0.5 * (lo + hi) * extent
    # A sample on the map's edge in exact arithmetic (a box clipped to [0, 1]) lands a few ulps
    # inside or outside by rounding, and graph optimisers (Grappler, XLA) rewrite x / c as
    # x * (1 / c), which rounds differently: tolerate EDGE_TOLERANCE px and clamp, so edge
    # samples always read the edge pixel. (crop_and_resize gives 0 or the edge value there,
    # depending on its rounding.)
    tol = EDGE_TOLERANCE * (extent + 1.0)
    valid = (pos >= -tol) & (pos <= extent + tol)
    # Out-of-range (or NaN) samples read index 0; their output is replaced by the extrapolation value.
    safe = tf.where(valid, tf.clip_by_value(pos, 0.0, extent), tf.zeros_like(pos))
    low = tf.floor(safe)
    lerp = safe - low
    low = tf.cast(low, tf.int32)
    high = tf.minimum(tf.cast(tf.math.ceil(safe), tf.int32), tf.cast(size - 1, tf.int32)[:, None])
    return low, high, lerp, valid


def _sample(table, offsets, widths, heights, boxes, crop_size, extrapolation_value):
    """Bilinear samples of per-box maps stored flat in ``table`` [M, C].

    Box n's map is the row-major [heights[n], widths[n], C] block starting at row offsets[n]
    (int32 [N]). boxes [N, 4] normalised. Returns float32 [N, crop_h, crop_w, C].
    """
    crop_h, crop_w = (int(v) for v in crop_size)
    boxes = tf.cast(boxes, tf.float32)
    y1, x1, y2, x2 = tf.unstack(boxes, axis=1)
    y_lo, y_hi, y_lerp, y_ok = _axis_samples(y1, y2, heights, crop_h)   # [N, ch]
    x_lo, x_hi, x_lerp, x_ok = _axis_samples(x1, x2, widths, crop_w)    # [N, cw]
    row_lo = offsets[:, None] + y_lo * widths[:, None]                   # [N, ch]
    row_hi = offsets[:, None] + y_hi * widths[:, None]
    # [N, ch, cw, 4] flat indices of (top-left, top-right, bottom-left, bottom-right).
    index = tf.stack([row_lo[:, :, None] + x_lo[:, None, :], row_lo[:, :, None] + x_hi[:, None, :],
                      row_hi[:, :, None] + x_lo[:, None, :], row_hi[:, :, None] + x_hi[:, None, :]], axis=-1)
    corners = tf.gather(table, index)                                    # [N, ch, cw, 4, C]
    top_left, top_right, bottom_left, bottom_right = tf.unstack(corners, axis=3)
    xl = x_lerp[:, None, :, None]
    yl = y_lerp[:, :, None, None]
    top = top_left + (top_right - top_left) * xl
    bottom = bottom_left + (bottom_right - bottom_left) * xl
    out = top + (bottom - top) * yl
    valid = (y_ok[:, :, None] & x_ok[:, None, :])[..., None]             # [N, ch, cw, 1]
    return tf.where(valid, out, tf.cast(extrapolation_value, out.dtype))


def crop_and_resize(image, boxes, box_indices, crop_size, method="bilinear", extrapolation_value=0.0,
                    name=None):
    """Drop-in for ``tf.image.crop_and_resize`` (bilinear only) built from gathers.

    image [B, H, W, C] (any float or int dtype; computed in float32), boxes float [N, 4]
    normalised (y1, x1, y2, x2), box_indices int [N] in [0, B), crop_size (crop_h, crop_w)
    Python ints. Returns float32 [N, crop_h, crop_w, C]. Differentiable w.r.t. ``image``
    (and, as piecewise-linear functions, ``boxes``).
    """
    if method != "bilinear":
        raise ValueError(f"Only method='bilinear' is implemented, got {method!r}")
    with tf.name_scope(name or "crop_and_resize_gather"):
        image = tf.cast(image, tf.float32)
        shape = tf.shape(image)
        h, w = shape[1], shape[2]
        table = tf.reshape(image, [-1, shape[3]])                        # [B*H*W, C]
        offsets = tf.cast(box_indices, tf.int32) * (h * w)
        n = tf.shape(boxes)[0]
        out = _sample(table, offsets, tf.fill([n], w), tf.fill([n], h), boxes, crop_size,
                      extrapolation_value)
        return tf.ensure_shape(out, [None, int(crop_size[0]), int(crop_size[1]), image.shape[-1]])


def multilevel_crop_and_resize(feature_maps, boxes, box_indices, levels, crop_size, name=None):
    """Crop every box from its own pyramid level in one gather (static shapes, XLA-friendly).

    feature_maps: list of [B, H_l, W_l, C] (same B and C); boxes float [N, 4] normalised
    (y1, x1, y2, x2); box_indices int [N] in [0, B); levels int [N], the index into
    ``feature_maps`` of each box's level. Returns float32 [N, crop_h, crop_w, C] in the order of
    ``boxes``: row n equals ``tf.image.crop_and_resize(feature_maps[levels[n]], boxes[n:n+1],
    box_indices[n:n+1], crop_size)``.
    """
    with tf.name_scope(name or "multilevel_crop_and_resize"):
        tables, starts, heights, widths = [], [], [], []
        start = tf.constant(0, tf.int32)
        for fmap in feature_maps:
            fmap = tf.cast(fmap, tf.float32)
            shape = tf.shape(fmap)
            tables.append(tf.reshape(fmap, [-1, shape[3]]))
            starts.append(start)
            heights.append(shape[1])
            widths.append(shape[2])
            start = start + shape[0] * shape[1] * shape[2]
        # All levels in one table, so a single gather serves boxes of every level.
        table = tf.concat(tables, axis=0)
        levels = tf.cast(levels, tf.int32)
        h = tf.gather(tf.stack(heights), levels)
        w = tf.gather(tf.stack(widths), levels)
        offsets = tf.gather(tf.stack(starts), levels) + tf.cast(box_indices, tf.int32) * h * w
        out = _sample(table, offsets, w, h, boxes, crop_size, 0.0)
        channels = feature_maps[0].shape[-1]
        return tf.ensure_shape(out, [None, int(crop_size[0]), int(crop_size[1]), channels])
