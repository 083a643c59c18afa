"""The input pipeline's rewritten hot spots give the same results as the plain NumPy forms:
extract_bboxes (any() over an [N, H, W] copy) against a per-instance np.where reference, and
resize_mask's padding against np.pad, for C-order masks and [H, W, N] views of [N, H, W] buffers."""
import numpy as np

from mrcnn.structures.masks import resize_mask
from mrcnn.utils import extract_bboxes


def reference_boxes(mask):
    boxes = np.zeros((mask.shape[-1], 4), np.int32)
    for i in range(mask.shape[-1]):
        ys, xs = np.where(mask[:, :, i])
        if len(ys):
            boxes[i] = [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]
    return boxes


def test_extract_bboxes_equals_reference():
    rng = np.random.default_rng(0)
    mask = rng.random((37, 53, 7)) > 0.995   # sparse pixels: boxes reach every edge somewhere
    mask[:, :, 3] = False                    # an empty instance: zero box
    mask[0, 0, 4] = mask[-1, -1, 4] = True   # the full image
    got = extract_bboxes(mask)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, reference_boxes(mask))
    np.testing.assert_array_equal(extract_bboxes(mask.astype(np.uint8)), got)
    assert extract_bboxes(np.zeros((5, 6, 0), bool)).shape == (0, 4)


def test_resize_mask_padding_equals_np_pad_for_both_layouts():
    rng = np.random.default_rng(1)
    planes = rng.random((3, 12, 20)) > 0.5
    padding = [(4, 4), (0, 0), (0, 0)]
    for mask in (planes.transpose(1, 2, 0), np.ascontiguousarray(planes.transpose(1, 2, 0))):
        got = resize_mask(mask, 1.0, padding)
        np.testing.assert_array_equal(got, np.pad(mask, padding))
        assert got.dtype == bool
    np.testing.assert_array_equal(resize_mask(np.zeros((12, 20, 0), bool), 1.0, padding), np.zeros((20, 20, 0), bool))
