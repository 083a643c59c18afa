"""Tests for mrcnn.structures.anchors: known counts and values, order, a loop reference."""
import math

import numpy as np
import pytest

from mrcnn.structures import anchors as A
from mrcnn import utils
from mrcnn.config import Config


def reference_anchors(scales, ratios, shapes, strides, anchor_stride):
    """Plain loops in the documented order: level, row, column, ratio."""
    out = []
    for scale, (rows, cols), stride in zip(scales, shapes, strides):
        for y in range(0, rows, anchor_stride):
            for x in range(0, cols, anchor_stride):
                for r in ratios:
                    h, w = scale / math.sqrt(r), scale * math.sqrt(r)
                    cy, cx = y * stride, x * stride
                    out.append([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2])
    return np.array(out)


def test_default_config_1024_count():
    config = Config()
    shapes = A.compute_backbone_shapes(config, config.IMAGE_SHAPE)
    assert shapes.tolist() == [[256, 256], [128, 128], [64, 64], [32, 32], [16, 16]]
    anchors = A.get_anchors(config, config.IMAGE_SHAPE, normalized=False)
    assert anchors.shape == (261888, 4) and anchors.dtype == np.float32


def test_hand_worked_first_anchors():
    config = Config()
    a = A.get_anchors(config, (1024, 1024), normalized=False)
    s = math.sqrt(0.5)
    # P2, position (0, 0): ratio 0.5 (h = 32/sqrt(.5), w = 32*sqrt(.5)), then 1, then 2
    np.testing.assert_allclose(a[0], [-16 / s, -16 * s, 16 / s, 16 * s], rtol=1e-6)
    np.testing.assert_allclose(a[1], [-16, -16, 16, 16])
    np.testing.assert_allclose(a[2], [-16 * s, -16 / s, 16 * s, 16 / s], rtol=1e-6)
    # P2, next position is column 1: centre x = 4 (no half-stride offset)
    np.testing.assert_allclose(a[4], [-16, 4 - 16, 16, 4 + 16])
    # P2, row 1 starts after 256 columns * 3 ratios: centre y = 4
    np.testing.assert_allclose(a[256 * 3 + 1], [4 - 16, -16, 4 + 16, 16])
    # first anchor of P3: scale 64, ratio 0.5, centre (0, 0)
    np.testing.assert_allclose(a[256 * 256 * 3], [-32 / s, -32 * s, 32 / s, 32 * s], rtol=1e-6)
    # last anchor: P6 (stride 64), position (15, 15), ratio 2, scale 512
    np.testing.assert_allclose(a[-1], [960 - 256 * s, 960 - 256 / s, 960 + 256 * s, 960 + 256 / s],
                               rtol=1e-6)


@pytest.mark.parametrize("anchor_stride", [1, 2])
def test_vectorised_equals_loop_reference(anchor_stride):
    scales, ratios = (8, 16, 32, 64, 128), [0.5, 1, 2, 3]
    shapes, strides = [[16, 12], [8, 6], [4, 3], [2, 2], [1, 1]], [4, 8, 16, 32, 64]
    got = A.generate_pyramid_anchors(scales, ratios, shapes, strides, anchor_stride)
    np.testing.assert_allclose(got, reference_anchors(scales, ratios, shapes, strides, anchor_stride))
    assert utils.generate_pyramid_anchors is A.generate_pyramid_anchors


def test_get_anchors_normalised_and_cached():
    config = type("C", (Config,), {"IMAGE_MAX_DIM": 128, "IMAGE_MIN_DIM": 128})()
    pix = A.get_anchors(config, (128, 192, 3), normalized=False)
    norm = A.get_anchors(config, (128, 192, 3))
    np.testing.assert_allclose(norm, utils.norm_boxes(pix, (128, 192)), rtol=1e-6)
    assert A.get_anchors(config, (128, 192, 3)) is norm  # cached
    with pytest.raises(ValueError):
        norm[0, 0] = 1.0  # read-only: callers cannot corrupt the cache
    # non-square image: ceil(192 / 64) = 3 columns on P6
    assert A.compute_backbone_shapes(config, (128, 192)).tolist()[-1] == [2, 3]
    assert len(pix) == 3 * sum(math.ceil(128 / s) * math.ceil(192 / s) for s in (4, 8, 16, 32, 64))


def custom_shapes(image_shape):
    return [[image_shape[0] // s, image_shape[1] // s] for s in (4, 8, 16, 32, 64)]


def test_compute_backbone_shape_callable_honoured():
    config = type("C", (Config,), {"COMPUTE_BACKBONE_SHAPE": staticmethod(custom_shapes)})()
    assert A.compute_backbone_shapes(config, (100, 200)).tolist()[0] == [25, 50]
    assert A.compute_backbone_shapes(Config(), (100, 200)).tolist()[0] == [25, 50]
    assert A.compute_backbone_shapes(config, (130, 200)).tolist()[-1] == [2, 3]
