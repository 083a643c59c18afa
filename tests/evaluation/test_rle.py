"""mrcnn.evaluation.rle: our vectorised COCO RLE encoder against pycocotools' own encoder."""
import numpy as np
import pytest
from pycocotools import mask as mask_util

from mrcnn.evaluation.rle import encode_masks, mask_areas

# pycocotools' decode passes copy=False to NumPy 2's __array__ protocol; harmless here.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _reference(masks):
    """pycocotools' encoding of bool [H, W, N] masks (the format COCOeval reads)."""
    return mask_util.encode(np.asfortranarray(masks.astype(np.uint8)))


def _assert_same(masks):
    ours = encode_masks(masks)
    ref = _reference(masks)
    assert [r["size"] for r in ours] == [r["size"] for r in ref] == [list(masks.shape[:2])] * masks.shape[2]
    assert [r["counts"] for r in ours] == [r["counts"] for r in ref]
    decoded = mask_util.decode(ours)
    np.testing.assert_array_equal(decoded.reshape(masks.shape).astype(bool), masks)


@pytest.mark.parametrize("shape", [(7, 5, 3), (16, 16, 8), (31, 9, 1), (1, 1, 2), (1, 12, 4), (10, 1, 4)])
@pytest.mark.parametrize("density", [0.1, 0.5, 0.9])
def test_random_masks_match_pycocotools_and_round_trip(shape, density):
    rng = np.random.default_rng(sum(shape) + int(density * 10))
    _assert_same(rng.random(shape) < density)


def test_blocky_masks_both_code_paths():
    # W*N % 8 == 0 and C-contiguous takes the 8-pixels-per-word path; the slices below do not.
    rng = np.random.default_rng(0)
    masks = np.zeros((40, 24, 8), bool)
    for k in range(8):
        y, x = rng.integers(0, 30), rng.integers(0, 16)
        masks[y:y + 1 + k, x:x + 8, k] = True
    _assert_same(masks)
    _assert_same(masks[:, :, :5])             # W*N not a multiple of 8
    _assert_same(masks[:, ::2, :])            # not contiguous


def test_fortran_order_and_uint8_and_float_input():
    rng = np.random.default_rng(1)
    masks = rng.random((13, 11, 4)) < 0.4
    fortran = np.asfortranarray(masks)
    assert not fortran.flags.c_contiguous
    assert [r["counts"] for r in encode_masks(fortran)] == [r["counts"] for r in _reference(masks)]
    # Non-bool input is thresholded at 0.5 (uint8 0/1 and float probabilities alike).
    assert [r["counts"] for r in encode_masks(masks.astype(np.uint8))] == \
        [r["counts"] for r in _reference(masks)]
    probs = np.where(masks, 0.75, 0.25)
    assert [r["counts"] for r in encode_masks(probs)] == [r["counts"] for r in _reference(masks)]


def test_empty_and_full_masks():
    empty = np.zeros((6, 4, 1), bool)
    full = np.ones((6, 4, 1), bool)
    _assert_same(empty)
    _assert_same(full)
    _assert_same(np.concatenate([full, empty, full], axis=2))
    # Uncompressed COCO counts: a full mask starts with a zero-length background run.
    assert mask_util.frPyObjects([{"size": [6, 4], "counts": [0, 24]}], 6, 4)[0]["counts"] == \
        encode_masks(full)[0]["counts"]
    assert mask_util.frPyObjects([{"size": [6, 4], "counts": [24]}], 6, 4)[0]["counts"] == \
        encode_masks(empty)[0]["counts"]
    assert mask_areas(encode_masks(np.concatenate([full, empty], axis=2)), mask_util) == [24, 0]


def test_no_masks_and_bad_rank():
    assert encode_masks(np.zeros((5, 5, 0), bool)) == []
    with pytest.raises(ValueError, match=r"\[H, W, N\]"):
        encode_masks(np.zeros((5, 5), bool))


def test_mask_areas_counts_pixels_beyond_255_masks():
    # pycocotools' own area() overflows a uint8 buffer past 255 masks under NumPy 2.
    n = 300
    masks = np.zeros((20, 20, n), bool)
    for k in range(n):
        masks.reshape(-1, n)[: k % 400 + 1, k] = True   # k+1 pixels in row-major order
    areas = mask_areas(encode_masks(masks), mask_util)
    assert areas == [k + 1 for k in range(n)]
    assert areas == [int(a) for a in masks.sum(axis=(0, 1))]
