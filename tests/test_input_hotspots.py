"""The input pipeline's rewritten hot spots give the same results as the plain NumPy forms:
extract_bboxes (any() over an [N, H, W] copy) against a per-instance np.where reference."""
import numpy as np

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
