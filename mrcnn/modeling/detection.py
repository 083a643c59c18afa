"""Detection layer: refined, per-class NMS'd detections from the box head's outputs."""
from __future__ import annotations

import keras
import tensorflow as tf

from mrcnn.structures import boxes_tf as box_ops


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionLayer(keras.layers.Layer):
    """Inputs: rois [B, R, 4] normalised, class probs [B, R, C], deltas [B, R, C, 4],
    windows [B, 4] normalised (the image area inside the padding).

    Output: [B, max_instances, 6] rows (y1, x1, y2, x2, class_id, score), normalised,
    sorted by score, zero-padded. Per ROI the arg-max class is taken and its deltas applied;
    background and scores below ``min_confidence`` are dropped; NMS runs per class.
    """

    def __init__(self, max_instances=100, min_confidence=0.7, nms_threshold=0.3,
                 std_dev=(0.1, 0.1, 0.2, 0.2), **kwargs):
        super().__init__(**kwargs)
        self.max_instances = int(max_instances)
        self.min_confidence = float(min_confidence)
        self.nms_threshold = float(nms_threshold)
        self.std_dev = tuple(float(v) for v in std_dev)

    def call(self, rois, probs, deltas, windows):
        num_classes = tf.shape(probs)[-1]
        class_ids = tf.argmax(probs, axis=-1, output_type=tf.int32)            # [B, R]
        scores = tf.reduce_max(probs, axis=-1)                                # [B, R]
        class_deltas = tf.gather(deltas, class_ids, batch_dims=2)             # [B, R, 4]
        boxes = box_ops.decode_deltas(rois, class_deltas, self.std_dev)
        boxes = box_ops.clip_boxes(boxes, windows)
        # Only the arg-max class keeps its score, so the class-wise NMS below is matterport's
        # "NMS among ROIs that picked the same class". Column 0 (background) is dropped.
        one_hot = tf.one_hot(class_ids, num_classes) * scores[..., None]
        one_hot = one_hot[..., 1:]
        # Keep scores >= min_confidence: combined NMS keeps strictly greater scores.
        threshold = max(self.min_confidence - 1e-6, 0.0)
        nmsed = tf.image.combined_non_max_suppression(
            boxes[:, :, None, :], one_hot,
            max_output_size_per_class=self.max_instances, max_total_size=self.max_instances,
            iou_threshold=self.nms_threshold, score_threshold=threshold,
            pad_per_class=False, clip_boxes=False)
        valid = tf.sequence_mask(nmsed.valid_detections, self.max_instances, dtype=tf.float32)
        det_classes = (nmsed.nmsed_classes + 1.0) * valid
        det = tf.concat([nmsed.nmsed_boxes * valid[..., None], det_classes[..., None],
                         nmsed.nmsed_scores[..., None] * valid[..., None]], axis=-1)
        return det

    def compute_output_shape(self, rois_shape, *_):
        return (rois_shape[0], self.max_instances, 6)

    def get_config(self):
        config = super().get_config()
        config.update(max_instances=self.max_instances, min_confidence=self.min_confidence,
                      nms_threshold=self.nms_threshold, std_dev=list(self.std_dev))
        return config
