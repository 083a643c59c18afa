"""Proposal layer: RPN scores and deltas -> a fixed number of normalised ROIs per image."""
from __future__ import annotations

import keras
import tensorflow as tf

from mrcnn.structures import boxes_tf as box_ops


@keras.saving.register_keras_serializable(package="mrcnn")
class ProposalLayer(keras.layers.Layer):
    """Top-k by objectness, decode, clip to [0, 1], NMS, zero-pad.

    Inputs: rpn_probs [B, A, 2], rpn_deltas [B, A, 4] (divided by ``std_dev``),
    anchors [A, 4] or [B, A, 4] normalised.
    Output: [B, proposal_count, 4] normalised (y1, x1, y2, x2), zero rows as padding,
    sorted by score.
    """

    def __init__(self, proposal_count, nms_threshold, pre_nms_limit=6000,
                 std_dev=(0.1, 0.1, 0.2, 0.2), **kwargs):
        super().__init__(**kwargs)
        self.proposal_count = int(proposal_count)
        self.nms_threshold = float(nms_threshold)
        self.pre_nms_limit = int(pre_nms_limit)
        self.std_dev = tuple(float(v) for v in std_dev)

    def call(self, rpn_probs, rpn_deltas, anchors):
        scores = rpn_probs[:, :, 1]
        num_anchors = tf.shape(scores)[1]
        k = tf.minimum(self.pre_nms_limit, num_anchors)
        top = tf.math.top_k(scores, k=k, sorted=True)
        ix = top.indices
        scores = top.values
        deltas = tf.gather(rpn_deltas, ix, batch_dims=1)
        if len(anchors.shape) == 2:
            pre_anchors = tf.gather(anchors, ix)
        else:
            pre_anchors = tf.gather(anchors, ix, batch_dims=1)
        boxes = box_ops.decode_deltas(pre_anchors, deltas, self.std_dev)
        boxes = box_ops.clip_boxes(boxes, tf.constant([0.0, 0.0, 1.0, 1.0]))

        def nms(args):
            b, s = args
            # The padded form (NonMaxSuppressionV4: same kernel and result) has static shapes,
            # so XLA can compile it; rows past ``count`` are zeroed, as the padding was.
            keep, count = tf.image.non_max_suppression_padded(b, s, self.proposal_count, self.nms_threshold,
                                                              pad_to_max_output_size=True)
            kept = tf.gather(b, keep)
            return kept * tf.cast(tf.range(self.proposal_count) < count, kept.dtype)[:, None]

        out = tf.map_fn(nms, (boxes, scores),
                        fn_output_signature=tf.TensorSpec([self.proposal_count, 4], tf.float32))
        return out

    def compute_output_shape(self, rpn_probs_shape, *_):
        return (rpn_probs_shape[0], self.proposal_count, 4)

    def get_config(self):
        config = super().get_config()
        config.update(proposal_count=self.proposal_count, nms_threshold=self.nms_threshold,
                      pre_nms_limit=self.pre_nms_limit, std_dev=list(self.std_dev))
        return config
