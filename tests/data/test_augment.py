"""Tests for mrcnn.data.augment: image/mask consistency, references, determinism."""
import numpy as np
import pytest
from skimage.transform import resize as sk_resize

from mrcnn.data.augment import Augmenter, brightness_contrast, horizontal_flip, scale_jitter

COLOUR = np.array([200, 100, 50], np.uint8)


def rect_scene(h=100, w=120, box=(20, 30, 60, 90)):
    image = np.zeros((h, w, 3), np.uint8)
    masks = np.zeros((h, w, 2), bool)
    y1, x1, y2, x2 = box
    image[y1:y2, x1:x2] = COLOUR
    masks[y1:y2, x1:x2, 0] = True
    masks[70:90, 5:15, 1] = True          # second instance over black background
    return image, masks


def bbox(mask):
    ys, xs = np.nonzero(mask)
    return np.array([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1])


def test_horizontal_flip_moves_image_and_masks_together():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    masks = rng.random((7, 9, 3)) > 0.5
    fi, fm = horizontal_flip(image, masks)
    np.testing.assert_array_equal(fi[:, 0], image[:, -1])
    np.testing.assert_array_equal(fm[:, 2], masks[:, -3])
    for k in range(3):   # each mask still covers the same pixel values
        np.testing.assert_array_equal(np.sort(fi[fm[..., k]], axis=0), np.sort(image[masks[..., k]], axis=0))
    assert fm.dtype == bool and fi.dtype == np.uint8


@pytest.mark.parametrize("seed, rng_range", [(0, (0.5, 0.8)), (1, (1.3, 1.7)), (2, (0.8, 1.2))])
def test_scale_jitter_keeps_masks_on_their_pixels(seed, rng_range):
    image, masks = rect_scene()
    si, sm = scale_jitter(image, masks, rng_range, np.random.default_rng(seed))
    f = np.random.default_rng(seed).uniform(*rng_range)
    assert si.shape[:2] == sm.shape[:2] == (round(100 * f), round(120 * f))
    assert si.dtype == np.uint8 and sm.dtype == bool
    np.testing.assert_allclose(bbox(sm[..., 0]), np.array([20, 30, 60, 90]) * f, atol=1.0)
    np.testing.assert_allclose(bbox(sm[..., 1]), np.array([70, 5, 90, 15]) * f, atol=1.0)
    # Away from the edges (bilinear blends there), pixels under the mask have the
    # rectangle's colour and pixels outside it are background.
    m = sm[..., 0]
    inner = m.copy()
    outer = m.copy()
    for _ in range(2):
        inner[1:-1, 1:-1] &= inner[:-2, 1:-1] & inner[2:, 1:-1] & inner[1:-1, :-2] & inner[1:-1, 2:]
        outer[1:-1, 1:-1] |= outer[:-2, 1:-1] | outer[2:, 1:-1] | outer[1:-1, :-2] | outer[1:-1, 2:]
    assert inner.sum() > 100
    assert (si[inner] == COLOUR).all()
    assert (si[~outer] == 0).all()


def test_scale_jitter_matches_skimage_grids():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    masks = rng.random((20, 30, 4)) > 0.5
    si, sm = scale_jitter(image, masks, (1.5, 1.5), rng)
    want_m = sk_resize(masks, sm.shape[:2] + (4,), order=0, anti_aliasing=False, preserve_range=True)
    np.testing.assert_array_equal(sm, want_m.astype(bool))
    want_i = sk_resize(image, si.shape, order=1, anti_aliasing=False, preserve_range=True, mode="edge")
    assert np.abs(si.astype(float) - want_i).max() <= 1.0 + 1e-6   # uint8 rounding


def test_brightness_contrast_formula_and_identity():
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    np.testing.assert_array_equal(brightness_contrast(image, rng, 0.0, 0.0), image)
    out = brightness_contrast(image, np.random.default_rng(9), 0.2, 0.3)
    r = np.random.default_rng(9)
    a, b = 1 + r.uniform(-0.3, 0.3), r.uniform(-0.2, 0.2) * 255
    x = image.astype(np.float64)
    want = np.clip(np.rint((x - x.mean()) * a + x.mean() + b), 0, 255)
    assert out.dtype == np.uint8 and np.abs(out - want).max() <= 1


def test_augmenter_is_deterministic_and_masks_only_move():
    image, masks = rect_scene()
    aug = Augmenter()
    a = aug(image, masks, np.random.default_rng(11))
    b = aug(image, masks, np.random.default_rng(11))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    outs = {aug(image, masks, np.random.default_rng(s))[0].tobytes() for s in range(6)}
    assert len(outs) > 1
    # Flip only: exact mirror; colour only: masks untouched.
    fi, fm = Augmenter(1.0, None, 0, 0)(image, masks, np.random.default_rng(0))
    np.testing.assert_array_equal(fi, image[:, ::-1])
    np.testing.assert_array_equal(fm, masks[:, ::-1])
    ci, cm = Augmenter(0.0, None, 0.3, 0.3)(image, masks, np.random.default_rng(0))
    np.testing.assert_array_equal(cm, masks)
    assert not np.array_equal(ci, image)


def test_zero_instances_and_vanishing_masks():
    image = np.zeros((40, 50, 3), np.uint8)
    si, sm = scale_jitter(image, np.zeros((40, 50, 0), bool), (0.5, 0.5), np.random.default_rng(0))
    assert si.shape == (20, 25, 3) and sm.shape == (20, 25, 0)
    tiny = np.zeros((40, 50, 1), bool)
    tiny[0, 0] = True               # halving samples odd pixels: lost, returned empty
    _, sm = scale_jitter(image, tiny, (0.5, 0.5), np.random.default_rng(0))
    assert sm.shape == (20, 25, 1) and not sm.any()
    with pytest.raises(ValueError, match="scale_range"):
        Augmenter(scale_range=(1.2, 0.8))
    with pytest.raises(ValueError, match="differ"):
        scale_jitter(image, tiny[:10], (1, 1), np.random.default_rng(0))
