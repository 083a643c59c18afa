"""Pyramid ROIAlign: crop each ROI from the FPN level that suits its size.

Level = clip(4 + round(log2(sqrt(h*w) / (224 / sqrt(image_area)))), 2, 5), with h, w the
normalised ROI size and image_area the pixel area of the ROI's own molded image (after resize
and padding: ``image_meta``'s image_shape), so sqrt(h*w)*sqrt(image_area) is about the ROI's
side in pixels. matterport takes the area of the batch's first image; here each ROI uses its
own image's, which is the same for batches of one molded size (all that ``mold_inputs`` and
the input pipeline build). Crops use ``tf.image.crop_and_resize`` (bilinear; samples the box
corners at pixel centres, as the loaded weights expect).
"""
from __future__ import annotations

import keras
import tensorflow as tf

from mrcnn.modeling.roi_align_gather import multilevel_crop_and_resize


def roi_levels(boxes, image_area):
    """boxes [N, 4] normalised, image_area pixels: scalar or [N] (per ROI) -> int32 [N] in 2..5."""
    h = boxes[:, 2] - boxes[:, 0]
    w = boxes[:, 3] - boxes[:, 1]
    scale = tf.sqrt(tf.maximum(h * w, 1e-12)) / (224.0 / tf.sqrt(tf.cast(image_area, tf.float32)))
    level = 4.0 + tf.round(tf.math.log(scale) / tf.math.log(2.0))
    return tf.cast(tf.clip_by_value(level, 2.0, 5.0), tf.int32)


def molded_shapes(images):
    """images [B, H, W, C] -> float32 [B, 2]: each image's molded (H, W).

    A batch's images share one molded size (``MaskRCNN.mold_inputs`` refuses mixed sizes and
    the input pipeline builds one shape), so the tensor's size is every image's
    ``image_meta`` image_shape.
    """
    shape = tf.shape(images)
    return tf.cast(tf.tile(shape[None, 1:3], [shape[0], 1]), tf.float32)


@keras.saving.register_keras_serializable(package="mrcnn")
class PyramidROIAlign(keras.layers.Layer):
    """Inputs: boxes [N, 4] normalised, box_indices int32 [N] (image of each ROI),
    feature maps [P2, P3, P4, P5] each [B, h, w, C], image_shapes [B, 2] molded (H, W) in
    pixels per image (``image_meta[:, 4:6]`` or ``molded_shapes(images)``).
    Output: [N, pool, pool, C] in the order of ``boxes``. ``use_gather``: crop with
    ``mrcnn.modeling.roi_align_gather`` (static shapes, compiles under XLA; same values).
    """

    def __init__(self, pool_shape, use_gather=False, **kwargs):
        super().__init__(**kwargs)
        self.pool_shape = tuple(int(v) for v in pool_shape)
        self.use_gather = bool(use_gather)

    def call(self, boxes, box_indices, feature_maps, image_shapes):
        boxes = tf.stop_gradient(boxes)
        box_indices = tf.stop_gradient(tf.cast(box_indices, tf.int32))
        image_shapes = tf.cast(image_shapes, tf.float32)
        areas = tf.gather(image_shapes[:, 0] * image_shapes[:, 1], box_indices)   # [N]
        levels = roi_levels(boxes, areas)
        if self.use_gather:
            return multilevel_crop_and_resize(feature_maps, boxes, box_indices, levels - 2, self.pool_shape)
        positions, crops = [], []
        for i, fmap in enumerate(feature_maps):
            ix = tf.cast(tf.where(tf.equal(levels, i + 2))[:, 0], tf.int32)
            crops.append(tf.image.crop_and_resize(
                fmap, tf.gather(boxes, ix), tf.gather(box_indices, ix), self.pool_shape,
                method="bilinear"))
            positions.append(ix)
        # dynamic_stitch puts every crop back at its ROI's position.
        return tf.dynamic_stitch(positions, crops)

    def compute_output_shape(self, boxes_shape, _, feature_shapes, *__):
        return (boxes_shape[0],) + self.pool_shape + (feature_shapes[0][-1],)

    def get_config(self):
        config = super().get_config()
        config.update(pool_shape=list(self.pool_shape), use_gather=self.use_gather)
        return config
