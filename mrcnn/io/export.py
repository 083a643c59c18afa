"""Export a trained model as a TensorFlow SavedModel with a uint8-image serving signature.

The command is ``mrcnn-export RUN_OR_WEIGHTS OUT_DIR`` (``python -m mrcnn_keras3.export_cli``);
in code: ``export_saved_model(model, out_dir, class_names)`` with an inference ``MaskRCNN``
(``mrcnn.evaluation.eval_loop.open_run`` opens a run folder).

Serving signature ``serving_default`` (one image per call, no batch axis):

    image            uint8   [H, W, 3]   RGB, any size
    -> boxes         int32   [N, 4]      (y1, x1, y2, x2) original pixels, y2/x2 exclusive
       classes       int32   [N]         class ids (0 is background, never returned)
       scores        float32 [N]
       masks         bool    [N, H, W]   full-size instance masks
       num_detections int32  []          N

Signature ``class_names`` (no input) -> ``class_names`` string [NUM_CLASSES], "BG" first; the same
names are in ``assets/class_names.txt``. Everything ``MaskRCNN.detect`` does runs in the graph:
the "square" resize (bit-exact with ``utils.resize_image``, i.e. skimage's bilinear resize without
anti-aliasing, then truncation to uint8), zero padding, MEAN_PIXEL subtraction, the network,
box unmolding and mask pasting (``mrcnn.structures.masks.paste_masks``). Only IMAGE_RESIZE_MODE="square" exports.

The SavedModel is written into a temporary folder beside OUT_DIR and renamed into place, so a
killed export never leaves a half-written SavedModel at OUT_DIR.
"""
from __future__ import annotations

import json
import os
import tempfile

from mrcnn.io.fsio import atomic_directory
from mrcnn.io.runs import RunError


class ExportError(RunError):
    """What cannot be exported (config, class names, target folder); the message says the fix."""


# ----------------------------------------------------------------------------- inputs (no TF)
def load_config(config_path, min_confidence=None, precision="off"):
    """The inference config (batch 1; DETECTION_MIN_CONFIDENCE overridden when given).

    ``precision`` (see ``eval_loop.inference_config``): float32 ("off") unless asked, whatever
    the run trained in, since a SavedModel runs on hardware nobody knows yet.
    """
    from mrcnn.evaluation.eval_loop import inference_config
    from mrcnn.io.runs import read_config

    config = inference_config(read_config(config_path), min_confidence, precision)
    if config.IMAGE_RESIZE_MODE != "square":
        raise ExportError(f"{config_path}: IMAGE_RESIZE_MODE={config.IMAGE_RESIZE_MODE!r} cannot be "
                          f"exported; only 'square' (fixed-size input, constant anchors) is supported. "
                          f"Pass --config with IMAGE_RESIZE_MODE = \"square\".")
    return config


# ----------------------------------------------------------------------------- graph pieces
def square_resize_shape(h, w, min_dim, max_dim, min_scale):
    """``utils.resize_image`` "square" sizes in TF: (new_h, new_w) int32 scalars.

    Float64 and round-half-to-even, as Python computes ``round(h * scale)``.
    """
    import tensorflow as tf

    h = tf.cast(h, tf.float64)
    w = tf.cast(w, tf.float64)
    scale = tf.constant(1.0, tf.float64)
    if min_dim:
        scale = tf.maximum(scale, float(min_dim) / tf.minimum(h, w))
    if min_scale:
        scale = tf.maximum(scale, float(min_scale))
    long_side = tf.maximum(h, w)
    scale = tf.where(tf.round(long_side * scale) > float(max_dim), float(max_dim) / long_side, scale)
    return tf.cast(tf.round(h * scale), tf.int32), tf.cast(tf.round(w * scale), tf.int32)


def _axis_taps(size_in, size_out):
    """Per output index along one axis: the two input taps (indices into the input padded by one
    zero on each side) and their weights, float64 — scipy.ndimage.zoom(order=1, grid_mode=True,
    mode="grid-constant"): c = (k + 0.5) * (in / out) - 0.5, weights (1 - t, t)."""
    import tensorflow as tf

    zoom = tf.cast(size_in, tf.float64) / tf.cast(size_out, tf.float64)
    c = (tf.cast(tf.range(size_out), tf.float64) + 0.5) * zoom - 0.5
    start = tf.floor(c)
    t = c - start
    start = tf.cast(start, tf.int32)
    return start + 1, start + 2, 1.0 - t, t


def resize_like_skimage(image, new_h, new_w):
    """uint8 [H, W, C] -> uint8 [new_h, new_w, C], equal to ``utils.resize_image``'s resize:
    skimage ``resize(order=1, mode="constant", anti_aliasing=False, preserve_range=True)`` (zeros
    beyond the edges), clipped to the input's value range, then truncated by ``astype(uint8)``."""
    import tensorflow as tf

    x = tf.cast(image, tf.float64)
    lo, hi = tf.reduce_min(x), tf.reduce_max(x)
    padded = tf.pad(x, [[1, 1], [1, 1], [0, 0]])
    y0, y1, wy0, wy1 = _axis_taps(tf.shape(image)[0], new_h)
    x0, x1, wx0, wx1 = _axis_taps(tf.shape(image)[1], new_w)
    rows0, rows1 = tf.gather(padded, y0), tf.gather(padded, y1)
    wy0, wy1 = wy0[:, None, None], wy1[:, None, None]
    wx0, wx1 = wx0[None, :, None], wx1[None, :, None]
    # scipy sums the taps in this order, each as (value * wy) * wx; keep it for bit-equality
    out = (tf.gather(rows0, x0, axis=1) * wy0) * wx0
    out = out + (tf.gather(rows0, x1, axis=1) * wy0) * wx1
    out = out + (tf.gather(rows1, x0, axis=1) * wy1) * wx0
    out = out + (tf.gather(rows1, x1, axis=1) * wy1) * wx1
    # cval 0 widens skimage's clip range only when an output is <= 0, which positive taps never give
    return tf.cast(tf.clip_by_value(out, lo, hi), tf.uint8)


def _paste_matrix(size_in, y1, y2, start, stop):
    """Rows start..stop-1 (box-relative) of ``mrcnn.structures.masks._bilinear_matrix``:
    float32 [stop - start, size_in]."""
    import tensorflow as tf

    c = (tf.cast(tf.range(start, stop), tf.float64) + 0.5) * (
        tf.cast(size_in, tf.float64) / tf.cast(y2 - y1, tf.float64)) - 0.5
    i0 = tf.floor(c)
    f = tf.cast(c - i0, tf.float32)[:, None]
    i0 = tf.cast(i0, tf.int32)
    # one_hot gives a zero row for the out-of-range taps -1 and size_in: zeros beyond the edges
    return tf.one_hot(i0, size_in) * (1.0 - f) + tf.one_hot(i0 + 1, size_in) * f


def paste_masks_tf(masks, boxes, height, width, threshold=0.5):
    """TF version of ``mrcnn.structures.masks.paste_masks``: float [N, h, w] masks into int32 [N, 4] pixel boxes.

    Returns bool [N, height, width] (instance-major, unlike paste_masks' [H, W, N])."""
    import tensorflow as tf

    size_in = tf.shape(masks)[1:3]

    def paste(args):
        m, box = args
        y1, x1, y2, x2 = box[0], box[1], box[2], box[3]
        ya, xa = tf.clip_by_value(y1, 0, height), tf.clip_by_value(x1, 0, width)
        yb, xb = tf.clip_by_value(y2, ya, height), tf.clip_by_value(x2, xa, width)
        ry = _paste_matrix(size_in[0], y1, y2, ya - y1, yb - y1)
        rx = _paste_matrix(size_in[1], x1, x2, xa - x1, xb - x1)
        pasted = tf.matmul(tf.matmul(ry, m), rx, transpose_b=True)
        pasted = tf.clip_by_value(pasted, tf.reduce_min(m), tf.reduce_max(m)) >= threshold
        return tf.pad(pasted, [[ya, height - yb], [xa, width - xb]])

    # One empty box appended (and dropped) so map_fn never runs on zero elements, which it cannot
    # stack for an unknown output shape; a tf.cond around it makes Grappler log errors.
    masks = tf.concat([tf.cast(masks, tf.float32), tf.zeros([1, size_in[0], size_in[1]])], axis=0)
    boxes = tf.concat([tf.cast(boxes, tf.int32), tf.zeros([1, 4], tf.int32)], axis=0)
    out = tf.map_fn(paste, (masks, boxes), fn_output_signature=tf.TensorSpec([None, None], tf.bool))
    return out[:-1]


def make_serving_fn(net, config):
    """tf.function: uint8 [H, W, C] -> the output dict (see the module docstring)."""
    import numpy as np
    import tensorflow as tf

    from mrcnn.structures.anchors import get_anchors

    side = int(config.IMAGE_MAX_DIM)
    anchors = tf.constant(get_anchors(config, (side, side), normalized=True))
    mean = tf.constant(np.asarray(config.MEAN_PIXEL, np.float32))
    spec = tf.TensorSpec([None, None, int(config.IMAGE_CHANNEL_COUNT)], tf.uint8, name="image")

    # No autograph: the graph has no Python control flow on tensors, and tracing is faster.
    @tf.function(input_signature=[spec], autograph=False)
    def serve(image):
        h, w = tf.shape(image)[0], tf.shape(image)[1]
        check = tf.debugging.assert_positive(h * w, message="image must have at least one pixel")
        with tf.control_dependencies([check]):  # before anything divides by the size
            image = tf.identity(image)
        new_h, new_w = square_resize_shape(h, w, config.IMAGE_MIN_DIM, side, config.IMAGE_MIN_SCALE)
        resized = resize_like_skimage(image, new_h, new_w)
        top, left = (side - new_h) // 2, (side - new_w) // 2
        molded = tf.pad(resized, [[top, side - new_h - top], [left, side - new_w - left], [0, 0]])
        molded = tf.cast(molded, tf.float32) - mean
        molded = tf.reshape(molded, [1, side, side, int(config.IMAGE_CHANNEL_COUNT)])
        window = tf.cast(tf.stack([top, left, top + new_h, left + new_w]), tf.float64)
        # utils.norm_boxes: (box - [0, 0, 1, 1]) / (side - 1) in float64, then float32
        norm_window = tf.cast((window - [0.0, 0.0, 1.0, 1.0]) / float(side - 1), tf.float32)
        detections, masks, counts = net((molded, norm_window[None], anchors), training=False)
        n = counts[0]
        det = tf.cast(detections[0, :n], tf.float32)
        # MaskRCNN.unmold_detections: float32 window shift/scale, then denorm_boxes in float64
        wy1, wx1, wy2, wx2 = norm_window[0], norm_window[1], norm_window[2], norm_window[3]
        shift = tf.stack([wy1, wx1, wy1, wx1])
        scale = tf.stack([wy2 - wy1, wx2 - wx1, wy2 - wy1, wx2 - wx1])
        boxes = tf.cast((det[:, :4] - shift) / scale, tf.float64)
        size = tf.cast(tf.stack([h - 1, w - 1, h - 1, w - 1]), tf.float64)
        boxes = tf.cast(tf.round(boxes * size + [0.0, 0.0, 1.0, 1.0]), tf.int32)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes = tf.boolean_mask(boxes, keep)
        classes = tf.boolean_mask(tf.cast(det[:, 4], tf.int32), keep)
        scores = tf.boolean_mask(det[:, 5], keep)
        full = paste_masks_tf(tf.boolean_mask(masks[:n], keep), boxes, h, w)
        return {"boxes": boxes, "classes": classes, "scores": scores, "masks": full,
                "num_detections": tf.shape(boxes)[0]}

    return serve


def _build_module(net, config, class_names, assets_dir):
    """tf.Module holding the network's variables, the serving function and the class names."""
    import tensorflow as tf

    module = tf.Module()
    # Track the variables as Keras' own ExportArchive does, so the SavedModel holds them.
    module.model_variables = list(net.variables)
    module.serve = make_serving_fn(net, config)
    names = tf.constant(list(class_names), tf.string)
    module.class_names = tf.function(lambda: {"class_names": names}, input_signature=[], autograph=False)
    path = os.path.join(assets_dir, "class_names.txt")
    with open(path, "w", encoding="utf8") as f:
        f.write("\n".join(class_names) + "\n")
    module.class_names_file = tf.saved_model.Asset(path)
    return module


def export_saved_model(model, out_dir, class_names=None):
    """Write ``model`` (an inference ``MaskRCNN``) as a SavedModel at ``out_dir``, atomically.

    ``class_names``: ["BG", ...] of length NUM_CLASSES (generic names when None). An existing
    SavedModel at ``out_dir`` is replaced; any other existing non-empty folder is refused.
    Returns ``out_dir``.
    """
    import tensorflow as tf

    config = model.config
    if config.IMAGE_RESIZE_MODE != "square":
        raise ExportError(f"IMAGE_RESIZE_MODE={config.IMAGE_RESIZE_MODE!r} cannot be exported; "
                          f"only 'square' is supported.")
    names = list(class_names or ["BG"] + [f"class {i}" for i in range(1, config.NUM_CLASSES)])
    if len(names) != config.NUM_CLASSES:
        raise ExportError(f"{len(names)} class names given for NUM_CLASSES={config.NUM_CLASSES}.")
    out_dir = os.path.abspath(os.fspath(out_dir))
    check_target(out_dir)
    with atomic_directory(out_dir) as tmp, tempfile.TemporaryDirectory() as assets_dir:
        module = _build_module(model.keras_model, config, names, assets_dir)
        signatures = {"serving_default": module.serve, "class_names": module.class_names}
        tf.saved_model.save(module, tmp, signatures=signatures)
        with open(os.path.join(tmp, "mrcnn_export.json"), "w", encoding="utf8") as f:
            json.dump({"class_names": names, "image_max_dim": int(config.IMAGE_MAX_DIM),
                       "detection_min_confidence": float(config.DETECTION_MIN_CONFIDENCE)}, f, indent=2)
    return out_dir


def check_target(out_dir):
    """ExportError unless ``out_dir`` is new, empty or an earlier SavedModel (it is replaced)."""
    if os.path.isfile(out_dir):
        raise ExportError(f"{out_dir} is a file; pass a folder path for the SavedModel.")
    if os.path.isdir(out_dir) and os.listdir(out_dir) \
            and not os.path.isfile(os.path.join(out_dir, "saved_model.pb")):
        raise ExportError(f"{out_dir} exists and is not a SavedModel; pass a new or empty folder "
                          f"(an earlier export there is replaced).")
