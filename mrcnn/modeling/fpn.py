"""Feature pyramid (P2-P6) on top of backbone maps C2-C5, with matterport's layer names.

Laterals ``fpn_c5p5``..``fpn_c2p2`` (1x1), top-down nearest upsampling and add, then 3x3
``fpn_p2``..``fpn_p5``. P6 is P5 subsampled with stride 2 (a 1x1 max-pool), used by the RPN only.
"""
from __future__ import annotations

from keras import layers as KL

from mrcnn.modeling.conv import FastGradConv2D


def build_fpn(c2, c3, c4, c5, depth):
    """[B, H/4.., C*] maps -> [P2, P3, P4, P5, P6], each [B, h, w, depth]."""
    p5 = FastGradConv2D(depth, 1, name="fpn_c5p5")(c5)
    p4 = KL.Add(name="fpn_p4add")([
        KL.UpSampling2D(2, name="fpn_p5upsampled")(p5),
        FastGradConv2D(depth, 1, name="fpn_c4p4")(c4)])
    p3 = KL.Add(name="fpn_p3add")([
        KL.UpSampling2D(2, name="fpn_p4upsampled")(p4),
        FastGradConv2D(depth, 1, name="fpn_c3p3")(c3)])
    p2 = KL.Add(name="fpn_p2add")([
        KL.UpSampling2D(2, name="fpn_p3upsampled")(p3),
        FastGradConv2D(depth, 1, name="fpn_c2p2")(c2)])
    p2 = FastGradConv2D(depth, 3, padding="same", name="fpn_p2")(p2)
    p3 = FastGradConv2D(depth, 3, padding="same", name="fpn_p3")(p3)
    p4 = FastGradConv2D(depth, 3, padding="same", name="fpn_p4")(p4)
    p5 = FastGradConv2D(depth, 3, padding="same", name="fpn_p5")(p5)
    p6 = KL.MaxPooling2D(pool_size=1, strides=2, name="fpn_p6")(p5)
    return [p2, p3, p4, p5, p6]
